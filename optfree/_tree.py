"""The one leaf-wise helper every optimizer's update is written with.

Also what every optimizer's signature and update share besides: the type of
a weight-decay mask, the value of a hyperparameter at a step, and the
widening of narrow floats for computing in float32.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import chex
import jax
import jax.numpy as jnp
import optax

# A weight-decay mask, as ``optax.adamw`` takes it: a tree of bools with the
# params' structure (or a prefix of it), or a function of the params that
# returns one.
MaskOrFn = Optional[Union[Any, Callable[[optax.Params], Any]]]


def value_at(hyperparam: Any, count: chex.Array) -> Any:
  """``hyperparam(count)`` for a schedule, else ``hyperparam`` as it is.

  Args:
    hyperparam: a number, an array, or a function of the step count.
    count: the number of updates already applied.

  Returns:
    The value of ``hyperparam`` for the update after ``count`` updates.
  """
  return hyperparam(count) if callable(hyperparam) else hyperparam


def widen(tree: Any) -> Any:
  """``tree`` with every leaf in float32 at least.

  bfloat16 and float16 leaves become float32; float32 and float64 leaves are
  returned as they are, so a float32 computation under x64 stays float32.
  """
  def widen_leaf(leaf):
    leaf = jnp.asarray(leaf)
    return leaf.astype(jnp.promote_types(leaf.dtype, jnp.float32))

  return jax.tree.map(widen_leaf, tree)


class PerLeaf(list):
  """Operands given leaf by leaf (one entry per leaf of the mapped tree)."""


def map_leaves(
    fn: Callable[..., Any],
    tree: Any,
    *others: Any,
    num_outputs: int = 1,
) -> Any:
  """Applies ``fn(index, leaf, *other_leaves)`` leaf by leaf.

  ``index`` is the leaf's position in ``tree`` (the stochastic rounding draws
  its bits from it). Each of ``others`` is a tree with ``tree``'s structure,
  a :class:`PerLeaf` list with one entry per leaf, or ``None`` (``fn`` then
  gets ``None``).

  Args:
    fn: the per-leaf computation; returns one array, or a tuple of
      ``num_outputs`` arrays.
    tree: the tree that fixes the leaves and the structure of the outputs
      (``optax.MaskedNode`` entries have no leaves and stay as they are).
    *others: the other operands, as above.
    num_outputs: how many arrays ``fn`` returns.

  Returns:
    One tree like ``tree`` when ``num_outputs`` is 1, else a tuple of them.
  """
  leaves, treedef = jax.tree.flatten(tree)

  def column(other):
    if other is None:
      return [None] * len(leaves)
    if isinstance(other, PerLeaf):
      return other
    return treedef.flatten_up_to(other)

  columns = [column(other) for other in others]
  outputs = [fn(index, *operands)
             for index, operands in enumerate(zip(leaves, *columns))]
  if num_outputs == 1:
    return treedef.unflatten(outputs)
  transposed = list(zip(*outputs)) or [()] * num_outputs
  return tuple(treedef.unflatten(list(part)) for part in transposed)
