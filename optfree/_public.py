"""What every public optfree transformation does around its init and update.

:func:`public_transformation` wraps an optimizer's ``init``/``update`` pair
with the behaviour every public optimizer shares, so that it is written once:

* ``init`` rejects params leaves that are not real floating-point (an error
  naming each leaf by its key path and dtype, instead of a wrong number);
* ``init`` places the 0-d leaves of the state (step counts and other scalars)
  replicated on the devices of committed params, so that a jitted step taking
  sharded params compiles once instead of twice (uncommitted scalars in, then
  committed ones out of the first step);
* ``update`` accepts optax's extra keyword arguments (``value=loss``, ...)
  and passes them on where the wrapped transformation takes them;
* ``update`` without params, where they are needed, and with a state restored
  from a checkpoint without a target (plain dicts and lists), raise errors
  that name the optimizer and say what to do.

All of it runs in Python at trace time or at ``init``: the compiled update is
the wrapped one, with no added work.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import numpy as np
import optax

from optfree import _checks

RESTORE_HINT = (
    "A checkpoint restored without a target gives plain dicts and lists in "
    "place of the optimizer's state types. Restore with the abstract state as "
    "target: abstract = jax.eval_shape(opt.init, params), then "
    "checkpointer.restore(path, abstract) (orbax StandardCheckpointer) or "
    "manager.restore(step, args=ocp.args.StandardRestore(abstract))."
)


def _is_concrete_array(leaf: Any) -> bool:
  return isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer)


def _replicated_sharding(params: optax.Params) -> Optional[Any]:
  """The replicated sharding over the devices of the first committed param.

  ``None`` when no param is committed (numpy arrays, ``jnp`` arrays on the
  default device, tracers): then the scalars stay uncommitted too, and jit
  places everything on one device as before.
  """
  for leaf in jax.tree.leaves(params):
    if not (_is_concrete_array(leaf) and leaf.committed):
      continue
    sharding = leaf.sharding
    if isinstance(sharding, jax.sharding.NamedSharding):
      # The params' own mesh: a jitted step returns its replicated scalars
      # with exactly this sharding, so the second call hits the cache.
      return jax.sharding.NamedSharding(
          sharding.mesh, jax.sharding.PartitionSpec(),
          memory_kind=sharding.memory_kind)
    if isinstance(sharding, jax.sharding.SingleDeviceSharding):
      return sharding
    return None  # pmap and other layouts: left as they are.
  return None


def place_scalars(state: optax.OptState, params: optax.Params) -> Any:
  """``state`` with its uncommitted 0-d leaves replicated like the params.

  Param-shaped leaves made by ``zeros_like`` already follow their param's
  sharding; only the scalars optax and optfree create from constants start
  uncommitted. Under ``jit`` or ``eval_shape`` (tracers) nothing is moved.

  Args:
    state: an optimizer state, as ``init`` returned it.
    params: the params it was initialised from.

  Returns:
    The state, with the same structure, dtypes and values.
  """
  sharding = _replicated_sharding(params)
  if sharding is None:
    return state

  def place(leaf):
    if not (_is_concrete_array(leaf) and leaf.ndim == 0
            and not leaf.committed):
      return leaf
    if sharding.is_fully_addressable:
      return jax.device_put(leaf, sharding)
    # Params spanning several processes: each builds its own devices' copies
    # from the host value (device_put cannot reach the other processes').
    value = np.asarray(leaf)
    return jax.make_array_from_callback((), sharding, lambda _: value)

  return jax.tree.map(place, state)


def check_state_form(name: str, state: optax.OptState) -> None:
  """Raises TypeError if ``state`` is a checkpoint's plain dict or list.

  The states of optfree's transformations are NamedTuples or tuples (optax
  chains); a top-level dict or list is what a checkpoint restored without a
  target holds, and would otherwise fail as an ``AttributeError`` deep inside
  the update.
  """
  if isinstance(state, (dict, list)):
    raise TypeError(
        f"{name}: the optimizer state is a {type(state).__name__}, not the "
        f"state that {name}'s init returns. Pass the arguments in the order "
        f"update(updates, state, params). {RESTORE_HINT}"
    )


def public_transformation(
    name: str,
    tx: optax.GradientTransformation,
    *,
    needs_params: bool = True,
    mask: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """Wraps ``tx`` with the checks and placement every public optimizer has.

  Args:
    name: the optimizer's public name, used in every message.
    tx: the transformation to wrap (extra-args aware or not).
    needs_params: whether ``update`` requires ``params`` (Schedule-Free,
      weight decay); without them it raises a ValueError naming ``name``.
    mask: the optimizer's weight-decay mask (a tree of bools or a callable),
      checked against the params at ``init`` (ValueError naming the key
      paths that do not fit); ``None`` for none.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` computing exactly what ``tx``
    computes: ``init`` checks the params' dtypes (TypeError naming each
    non-floating leaf) and places scalar state leaves on the params' devices;
    ``update`` takes extra keyword arguments, passed to ``tx`` where it
    accepts them.
  """
  tx = optax.with_extra_args_support(tx)

  def init_fn(params):
    _checks.check_float_leaves(name, params)
    _checks.check_mask(name, mask, params)
    return place_scalars(tx.init(params), params)

  def update_fn(updates, state, params=None, **extra_args):
    check_state_form(name, state)
    if needs_params and params is None:
      raise ValueError(
          f"{name}: update() needs the current params: call "
          "update(grads, state, params)."
      )
    _checks.check_float_leaves(name, updates, "gradient")
    if params is not None:
      _checks.check_float_leaves(name, params)
    return tx.update(updates, state, params, **extra_args)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
