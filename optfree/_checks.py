"""Validation of hyperparameters, shared by every optimizer and schedule.

Each check raises ``ValueError`` naming the argument and the value it got, at
construction time. Values that cannot be inspected without tracing are let
through: a callable (an optax schedule) and a JAX tracer (a hyperparameter that
``optax.inject_hyperparams`` feeds in under ``jit``). Concrete arrays are checked
like Python numbers. Where a schedule is not accepted, ``check_number`` rejects
it, saying how to schedule the argument instead. ``reference_names`` turns a
keyword spelled as in the PyTorch reference into a pointed ``TypeError``.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from typing import Any, Callable, Iterable, TypeVar

import jax
import jax.numpy as jnp
import numpy as np


def _is_unchecked(value: Any) -> bool:
  return callable(value) or isinstance(value, jax.core.Tracer)


def _as_float(name: str, value: Any) -> float:
  if isinstance(value, bool):
    raise ValueError(f"{name} must be a number, got {value!r}")
  try:
    array = np.asarray(value)
  except Exception as error:  # pragma: no cover - defensive, message matters
    raise ValueError(f"{name} must be a number, got {value!r}") from error
  # jnp.issubdtype: numpy's does not count bfloat16 as floating.
  real = jnp.issubdtype(array.dtype, jnp.integer) or jnp.issubdtype(
      array.dtype, jnp.floating
  )
  if array.shape != () or not real:
    raise ValueError(f"{name} must be a real scalar number, got {value!r}")
  result = float(array)
  if not math.isfinite(result):
    raise ValueError(f"{name} must be finite, got {value!r}")
  return result


def _public_name(function: Any) -> str:
  """``optax.adam`` for optax's ``adam``: its package and its name."""
  package = (getattr(function, "__module__", None) or "").split(".")[0]
  name = getattr(function, "__qualname__", None) or repr(function)
  return f"{package}.{name}" if package else name


def check_number(
    name: str,
    value: Any,
    *,
    schedulable_via: str | Callable[..., Any] | None = None,
) -> None:
  """Raises ValueError unless ``value`` is a real, finite scalar number.

  Made for the arguments that take a number only. A schedule (any callable)
  passed there is otherwise accepted by the constructor and fails at the first
  update with an unrelated error; here it fails at once, with a message that
  names the argument and says how to get what was meant. A JAX tracer (a
  hyperparameter that ``optax.inject_hyperparams`` feeds in under ``jit``)
  passes; 0-d arrays are checked like Python numbers.

  Args:
    name: the argument's name, used in the message.
    value: what was passed.
    schedulable_via: the optimizer factory that took ``value``, as a function
      (``optfree.lion``) or its public name (``"optfree.lion"``): the message
      then shows ``optax.inject_hyperparams(optfree.lion)(..., b1=schedule)``,
      which evaluates the schedule at every update and passes the number on.
      ``None`` for the arguments of a schedule, which nothing injects into:
      the message then shows how to combine schedules instead.

  Raises:
    ValueError: for a callable, a bool, a non-number, a non-scalar array, NaN
      or an infinity.

  Example:
    >>> from optfree import _checks
    >>> import optax
    >>> _checks.check_number('b1', 0.9)
    >>> _checks.check_number('b1', optax.linear_schedule(0.9, 0.99, 100),
    ...                      schedulable_via='optfree.lion')
    Traceback (most recent call last):
    ...
    ValueError: b1 must be a number, got a schedule (a callable) ...
  """
  if isinstance(value, jax.core.Tracer):
    return
  if callable(value):
    message = (f"{name} must be a number, got a schedule (a callable) "
               f"{value!r}. ")
    if schedulable_via is None:
      message += (
          "The arguments of a schedule are numbers. To scale one schedule by "
          "another, multiply them:\n"
          "    lambda count: schedule_a(count) * schedule_b(count)\n"
          "to run schedules one after another, use "
          "optfree.sequential_schedule([schedule_a, schedule_b], "
          "milestones=[...]). (An optimizer hyperparameter follows a "
          "schedule through optax.inject_hyperparams.)")
    else:
      factory = (schedulable_via if isinstance(schedulable_via, str)
                 else _public_name(schedulable_via))
      message += (
          f"To change {name} during training, let optax inject the "
          "schedule: it evaluates it at every update and passes the number "
          "on:\n"
          f"    tx = optax.inject_hyperparams({factory})(..., "
          f"{name}=schedule)\n"
          f"with the other arguments of {factory} in place of '...'.")
    raise ValueError(message)
  _as_float(name, value)


def check_transformation(name: str, argument: str, value: Any) -> None:
  """Raises TypeError unless ``value`` is an optax ``GradientTransformation``.

  Anything with callable ``init`` and ``update`` passes. The usual mistake,
  an optimizer factory (``optax.adam``) instead of an optimizer
  (``optax.adam(1e-3)``), would otherwise fail at ``init`` with
  ``'function' object has no attribute 'init'``; the message says what to
  pass instead.

  Args:
    name: the function that took ``value``, used in the message.
    argument: the argument's name, used in the message.
    value: what was passed.
  """
  if callable(getattr(value, "init", None)) and callable(
      getattr(value, "update", None)):
    return
  message = (f"{name}: {argument} must be an optax GradientTransformation "
             "(an object with init and update)")
  if callable(value):
    factory = _public_name(value)
    raise TypeError(
        f"{message}, got the function {factory}, which builds one: call it "
        f"with its hyperparameters, e.g. {name}({factory}(learning_rate="
        "1e-3)) rather than "
        f"{name}({factory}).")
  raise TypeError(f"{message}, got {value!r}.")


_Function = TypeVar("_Function", bound=Callable[..., Any])

PORTING_TABLE = "docs/guides/porting.md"

_BETAS = "b1 and b2: betas=(b1, b2) is b1=b1, b2=b2"
_NO_LAST_EPOCH = None  # resume by restoring the state, whose count goes on

# The reference's keyword names that optfree spells otherwise, by optfree
# function: reference name -> optfree's (None: no counterpart). The porting
# table (docs/guides/porting.md) lists the same; tests/test_docs.py checks
# that the two agree and that every name given here is a parameter.
REFERENCE_NAMES: dict[str, dict[str, str | None]] = {
    # schedulefree 1.4.1
    "schedule_free_sgd": dict(lr="learning_rate", momentum="b1",
                              foreach=None),
    "schedule_free_adamw": dict(lr="learning_rate", betas=_BETAS,
                                foreach=None),
    "schedule_free_radam": dict(lr="learning_rate", betas=_BETAS,
                                foreach=None),
    "schedule_free": dict(base="base_optimizer", momentum="b1"),
    # facebookresearch/schedule_free's AdamCScheduleFreePlusPaper
    "schedule_free_plus": dict(lr="learning_rate", betas=_BETAS,
                               sf_beta1="sf_b1", sf_beta1_max="sf_b1_max",
                               sf_beta1_anneal_steps="sf_b1_anneal_steps",
                               polyak_beta="polyak_b"),
    # adabound 0.0.5 (and AdaBoundW of the repository)
    "adabound": dict(lr="learning_rate", betas=_BETAS),
    "amsbound": dict(lr="learning_rate", betas=_BETAS),
    "adaboundw": dict(lr="learning_rate", betas=_BETAS),
    # lion-pytorch 0.2.5
    "lion": dict(lr="learning_rate", betas=_BETAS, use_triton=None),
    # torch.optim.lr_scheduler
    "step_schedule": dict(last_epoch=_NO_LAST_EPOCH),
    "multistep_schedule": dict(last_epoch=_NO_LAST_EPOCH),
    "exponential_schedule": dict(last_epoch=_NO_LAST_EPOCH),
    "constant_factor_schedule": dict(total_iters="total_steps",
                                     last_epoch=_NO_LAST_EPOCH),
    "linear_factor_schedule": dict(total_iters="total_steps",
                                   last_epoch=_NO_LAST_EPOCH),
    "polynomial_decay_schedule": dict(total_iters="total_steps",
                                      last_epoch=_NO_LAST_EPOCH),
    "cosine_annealing_schedule": dict(T_max="t_max",
                                      last_epoch=_NO_LAST_EPOCH),
    "cosine_warm_restarts_schedule": dict(T_0="t_0", T_mult="t_mult",
                                          last_epoch=_NO_LAST_EPOCH),
    "cyclic_schedule": dict(
        scale_fn=None, scale_mode=None,
        cycle_momentum="cyclic_momentum_schedule, injected as b1",
        base_momentum="cyclic_momentum_schedule's base_momentum",
        max_momentum="cyclic_momentum_schedule's max_momentum",
        last_epoch=_NO_LAST_EPOCH),
    "onecycle_schedule": dict(
        epochs="total_steps (= epochs * steps_per_epoch)",
        steps_per_epoch="total_steps (= epochs * steps_per_epoch)",
        cycle_momentum="onecycle_momentum_schedule, injected as b1",
        base_momentum="onecycle_momentum_schedule's base_momentum",
        max_momentum="onecycle_momentum_schedule's max_momentum",
        last_epoch=_NO_LAST_EPOCH),
    "sequential_schedule": dict(schedulers="schedules",
                                last_epoch=_NO_LAST_EPOCH),
}


def reference_names(**renames: str | None) -> Callable[[_Function],
                                                        _Function]:
  """Decorator: a keyword named as in the reference gets a pointed TypeError.

  ``schedule_free_sgd(momentum=0.9)`` would raise Python's bare "unexpected
  keyword argument 'momentum'"; decorated with
  ``reference_names(momentum="b1")`` it raises ``TypeError:
  schedule_free_sgd got momentum=0.9: optfree calls it b1 (see the porting
  table, docs/guides/porting.md)``. The check runs before the call, on the
  keywords only, so a TypeError raised inside the function is never
  rewritten. The decorated function keeps its name, docstring, module and
  signature (``functools.wraps``: ``inspect.signature`` and Sphinx see the
  original).

  Args:
    **renames: reference argument name -> what optfree calls it (text put
      after "optfree calls it", e.g. ``"b1"`` or ``"b1 and b2"``), or
      ``None`` where optfree has no counterpart. A name that is a parameter
      of the function is an error (it would never be reached).

  Returns:
    The decorator.

  Example:
    >>> from optfree import _checks
    >>> @_checks.reference_names(lr="learning_rate")
    ... def sgd(learning_rate=1.0):
    ...   return learning_rate
    >>> sgd(lr=0.1)
    Traceback (most recent call last):
    ...
    TypeError: sgd got lr=0.1: optfree calls it learning_rate (see ...)
  """

  def decorate(function: _Function) -> _Function:
    parameters = inspect.signature(function).parameters
    clashes = sorted(set(renames) & set(parameters))
    if clashes:
      raise ValueError(
          f"reference_names: {clashes} are parameters of "
          f"{function.__name__}, not reference names it lacks")

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
      known = [key for key in kwargs if key in renames]
      if known:
        parts = []
        for key in known:
          new = renames[key]
          what = (f"optfree calls it {new}" if new is not None
                  else "optfree has no counterpart")
          parts.append(f"{key}={kwargs[key]!r}: {what}")
        raise TypeError(
            f"{function.__name__} got " + "; ".join(parts)
            + f" (see the porting table, {PORTING_TABLE})")
      return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

  return decorate


def check_interval(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_closed: bool = True,
    high_closed: bool = True,
) -> None:
  """Raises ValueError unless ``value`` lies in the given interval.

  Args:
    name: the argument's name, used in the message.
    value: a number, a 0-d array, a schedule or a tracer (the last two pass).
    low: lower end of the interval.
    high: upper end of the interval.
    low_closed: whether ``low`` itself is allowed.
    high_closed: whether ``high`` itself is allowed.
  """
  if _is_unchecked(value):
    return
  number = _as_float(name, value)
  above = number >= low if low_closed else number > low
  below = number <= high if high_closed else number < high
  if not (above and below):
    left = "[" if low_closed else "("
    right = "]" if high_closed else ")"
    raise ValueError(
        f"{name} must be in {left}{low}, {high}{right}, got {value!r}"
    )


def check_non_negative(name: str, value: Any) -> None:
  """Raises ValueError if ``value`` < 0 (schedules and tracers pass)."""
  check_interval(name, value, 0.0)


def check_positive(name: str, value: Any) -> None:
  """Raises ValueError if ``value`` <= 0 (schedules and tracers pass)."""
  check_interval(name, value, 0.0, low_closed=False)


def check_int(name: str, value: Any, minimum: float = 0) -> None:
  """Raises ValueError unless ``value`` is an integer >= ``minimum``."""
  if isinstance(value, jax.core.Tracer):
    return
  is_integer = isinstance(value, numbers.Integral) and not isinstance(
      value, bool
  )
  if not is_integer:
    array = np.asarray(value) if not isinstance(value, bool) else None
    is_integer = (
        array is not None
        and array.shape == ()
        and np.issubdtype(array.dtype, np.integer)
    )
  if not is_integer:
    raise ValueError(f"{name} must be an integer, got {value!r}")
  if int(value) < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
  """Raises ValueError unless ``value`` is one of ``choices``."""
  choices = tuple(choices)
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _leaf_dtype(leaf: Any) -> np.dtype:
  dtype = getattr(leaf, "dtype", None)
  return np.dtype(dtype) if dtype is not None else np.result_type(leaf)


def check_float_leaves(name: str, tree: Any, what: str = "params") -> None:
  """Raises TypeError unless every leaf of ``tree`` is real floating-point.

  An optimizer's arithmetic on an integer or boolean leaf gives a wrong
  number, not an error (an int32 leaf under Adam's normalization moves by
  ``lr / eps``), and a complex leaf would need :math:`|g|^2` where the
  optimizers square :math:`g`. Every offending leaf is named by its key path
  and dtype. Leaves that ``optax.masked`` left out (``MaskedNode``, an empty
  node) are not leaves, so a frozen integer leaf passes.

  Args:
    name: the optimizer's name, used in the message.
    tree: params or gradients.
    what: what ``tree`` is, used in the message.
  """
  bad = [
      (jax.tree_util.keystr(path), _leaf_dtype(leaf))
      for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
      if not jnp.issubdtype(_leaf_dtype(leaf), jnp.floating)
  ]
  if not bad:
    return
  lines = "\n".join(f"  {path or '(the root)'}: {dtype}" for path, dtype in bad)
  raise TypeError(
      f"{name}: every {what} leaf must be a real floating-point array; "
      f"these are not:\n{lines}\n"
      "Integer and boolean leaves cannot be trained: keep them out of the "
      "optimized tree, or freeze them with optax.masked or "
      "optax.multi_transform(..., optax.set_to_zero()). Complex leaves are "
      "not supported: optimize the real and imaginary parts as two float "
      "leaves."
  )


# Path entries that only wrappers add: flax.nnx keeps each array in a
# Variable (Param in the model, OptVariable in nnx.Optimizer's state).
_WRAPPER_KEYS = (jax.tree_util.GetAttrKey("value"),
                 jax.tree_util.GetAttrKey("raw_value"))


def shapes_by_path(
    tree: Any, is_leaf: Any = None, *, unwrap: bool = False
) -> dict[str, Any]:
  """``{key path: shape}`` of the leaves of ``tree``.

  Args:
    tree: a pytree.
    is_leaf: passed to the flattening.
    unwrap: drop the path entries of flax.nnx's Variable wrappers, so that a
      tree of Params and one of OptVariables (or of bare arrays) compare
      equal.

  Returns:
    The shapes by ``jax.tree_util.keystr`` of each leaf's path, in leaf
    order; the shape is ``None`` for an ``optax.MaskedNode``.
  """
  shapes = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=is_leaf)[0]:
    if unwrap:
      path = tuple(key for key in path if key not in _WRAPPER_KEYS)
    masked = type(leaf).__name__ == "MaskedNode"
    shapes[jax.tree_util.keystr(path)] = None if masked else np.shape(leaf)
  return shapes


def describe_shapes_mismatch(
    what: str, given: dict[str, Any], held: dict[str, Any]
) -> list[str]:
  """Lines naming the key paths where two ``shapes_by_path`` results differ.

  Lists the leaves only one side has and the leaves whose shapes differ
  (a ``None`` shape, a masked leaf, matches any), or the order if only that
  differs. Empty when they agree.
  """
  lines = [f"  only in the {what}: {path} {shape}"
           for path, shape in given.items() if path not in held]
  lines += [f"  only in the state: {path} {shape}"
            for path, shape in held.items() if path not in given]
  lines += [f"  shape at {path}: {what} {given[path]}, state {held[path]}"
            for path in given
            if path in held and None not in (given[path], held[path])
            and given[path] != held[path]]
  if not lines and list(given) != list(held):
    lines = [f"  key paths in another order: {what} {list(given)}, "
             f"state {list(held)}"]
  return lines


def describe_mismatch(what: str, tree: Any, state_tree: Any) -> str:
  """Where ``tree`` and ``state_tree`` differ, one line per key path.

  Lists the leaves only one of them has and the leaves whose shapes differ,
  with their shapes. Two trees with the same key paths and shapes but other
  container types (a list for a tuple) differ only in their ``PyTreeDef``,
  which is then printed.

  Args:
    what: the name of ``tree`` in the message (``params``, ``gradient``).
    tree: the tree that was passed.
    state_tree: the param-shaped tree the optimizer state holds.

  Returns:
    The description, empty when key paths, shapes and structure agree.
  """
  lines = describe_shapes_mismatch(
      what, shapes_by_path(tree), shapes_by_path(state_tree))
  if lines:
    return "\n".join(lines)
  structure = jax.tree.structure(tree)
  state_structure = jax.tree.structure(state_tree)
  if structure != state_structure:
    return (f"  same key paths and shapes, other containers:\n"
            f"  {what}: {structure}\n  state: {state_structure}")
  return ""


def check_trees_match(name: str, state_tree: Any, **trees: Any) -> None:
  """Raises ValueError unless every tree has the structure and leaf shapes of
  ``state_tree`` (the param-shaped part of an optimizer state).

  Shapes are compared exactly: a leaf that would merely broadcast against the
  state is an error, since it would silently corrupt the state. The message
  names each differing leaf by its key path, with its shapes.

  Args:
    name: the optimizer's name, used in the message.
    state_tree: a param-shaped tree from the optimizer state.
    **trees: the trees to check, by the name used in the message
      (``gradient=grads``, ``params=params``); ``None`` values are skipped.
  """
  state_structure = jax.tree.structure(state_tree)
  state_shapes = [np.shape(leaf) for leaf in jax.tree.leaves(state_tree)]
  for what, tree in trees.items():
    if tree is None:
      continue
    if jax.tree.structure(tree) != state_structure:
      raise ValueError(
          f"{name}: the {what} tree does not match the optimizer state "
          "(which was initialised from params with another structure):\n"
          + describe_mismatch(what, tree, state_tree)
      )
    shapes = [np.shape(leaf) for leaf in jax.tree.leaves(tree)]
    if shapes != state_shapes:
      raise ValueError(
          f"{name}: the {what} leaf shapes {shapes} do not match the "
          f"optimizer state's {state_shapes}:\n"
          + describe_mismatch(what, tree, state_tree)
      )


def check_float_dtype(name: str, value: Any) -> None:
  """Raises ValueError unless ``value`` is None or a floating-point dtype.

  A state kept in an integer dtype (``state_dtype``, ``mu_dtype``) would
  round every update away, silently.
  """
  if value is None:
    return
  try:
    dtype = jnp.dtype(value)
  except TypeError as error:
    raise ValueError(
        f"{name} must be a floating-point dtype or None, got {value!r}"
    ) from error
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
        f"{name} must be a floating-point dtype or None, got {value!r}")


def check_mask(name: str, mask: Any, params: Any) -> None:
  """Raises ValueError unless ``mask`` (or what it returns) fits ``params``.

  A mask is a tree of bools with the structure of the params or a prefix of
  it (as in ``optax.masked``); a callable mask is called on the params.
  Without this check a wrong mask fails inside ``jax.tree.map`` with a
  message that names neither the optimizer nor the mask.

  Args:
    name: the optimizer's name, used in the message.
    mask: ``None``, a tree of bools, or a callable returning one.
    params: the params the optimizer is initialised from.
  """
  if mask is None:
    return
  tree = mask(params) if callable(mask) else mask
  try:
    jax.tree.map(lambda *_: None, tree, params)
  except ValueError as error:
    paths = lambda t: [path for path, _ in  # noqa: E731
                       jax.tree_util.tree_flatten_with_path(t)[0]]
    mask_paths, param_paths = paths(tree), paths(params)
    covers = lambda m, p: p[:len(m)] == m  # noqa: E731
    lines = [f"  only in the mask: {jax.tree_util.keystr(m)}"
             for m in mask_paths if not any(covers(m, p) for p in param_paths)]
    lines += [f"  not covered by the mask: {jax.tree_util.keystr(p)}"
              for p in param_paths if not any(covers(m, p) for m in mask_paths)]
    raise ValueError(
        f"{name}: the mask does not fit the params: it must be a tree of "
        "bools with the params' structure, or a prefix of it.\n"
        + "\n".join(lines or [f"  {error}"])
    ) from error
