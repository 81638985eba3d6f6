"""The one leaf-wise helper every optimizer's update is written with."""

from __future__ import annotations

from typing import Any, Callable

import jax


def map_leaves(
    fn: Callable[..., Any],
    tree: Any,
    *others: Any,
    num_outputs: int = 1,
) -> Any:
  """Applies ``fn(index, leaf, *other_leaves)`` leaf by leaf.

  ``index`` is the leaf's position in ``tree`` (the stochastic rounding draws
  its bits from it). Each of ``others`` is a tree with ``tree``'s structure,
  a list with one entry per leaf, or ``None`` (``fn`` then gets ``None``).

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
    if isinstance(other, list):
      return other
    return treedef.flatten_up_to(other)

  columns = [column(other) for other in others]
  outputs = [fn(index, *operands)
             for index, operands in enumerate(zip(leaves, *columns))]
  if num_outputs == 1:
    return treedef.unflatten(outputs)
  transposed = list(zip(*outputs)) or [()] * num_outputs
  return tuple(treedef.unflatten(list(part)) for part in transposed)
