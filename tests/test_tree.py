"""optfree._tree: the leaf-wise helper and the shared lookups."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optfree import _tree

TREES = [
    {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)},
    # A list at the root whose entries are not all leaves: a state tree of
    # its structure must not be read as a list of per-leaf values.
    [jnp.ones(4), {"embedding": jnp.ones((2, 2)), "scale": jnp.ones(())}],
    [jnp.ones(2), jnp.ones(3)],
    jnp.ones(5),
]


@pytest.mark.parametrize("tree", TREES)
def test_map_leaves_pairs_each_leaf_with_its_index_and_others(tree):
  other = jax.tree.map(lambda x: x + 10.0, tree)
  per_leaf = _tree.PerLeaf(10 * i for i in range(len(jax.tree.leaves(tree))))
  sums, indices = _tree.map_leaves(
      lambda index, x, y, z, none: (x + y, jnp.full(x.shape, index + z)),
      tree, other, per_leaf, None, num_outputs=2)
  assert jax.tree.structure(sums) == jax.tree.structure(tree)
  jax.tree.map(lambda s, x: np.testing.assert_array_equal(s, 2 * x + 10),
               sums, tree)
  for i, leaf in enumerate(jax.tree.leaves(indices)):
    np.testing.assert_array_equal(leaf, 11 * i)


def test_map_leaves_keeps_masked_nodes():
  tree = {"w": jnp.ones(2), "frozen": optax.MaskedNode()}
  doubled = _tree.map_leaves(lambda index, x: 2 * x, tree)
  assert jax.tree.structure(doubled) == jax.tree.structure(tree)
  np.testing.assert_array_equal(doubled["w"], 2.0)


def test_value_at_calls_schedules_only():
  assert _tree.value_at(0.5, 3) == 0.5
  assert _tree.value_at(lambda count: count * 2.0, 3) == 6.0


def test_widen_promotes_narrow_floats_only():
  tree = [jnp.ones(2, jnp.bfloat16), jnp.ones(2, jnp.float16),
          jnp.ones(2, jnp.float32)]
  assert [x.dtype for x in _tree.widen(tree)] == [jnp.float32] * 3


def test_widen_keeps_float64(x64):
  assert _tree.widen(jnp.ones(2, jnp.float64)).dtype == jnp.float64
