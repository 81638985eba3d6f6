"""Unit tests of optfree/_public.py, the wrapper of every public optimizer.

The behaviours it adds are tested on every optimizer where they belong
(tests/test_faults.py, test_distributed.py, test_composition.py,
test_checkpoint.py); here, its parts on a plain optax transformation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optfree import _public


def test_wrapped_transformation_computes_what_it_wraps():
  inner = optax.adam(0.1)
  tx = _public.public_transformation("adam", inner, needs_params=False)
  params = {"w": jnp.arange(3.0)}
  grads = {"w": jnp.ones(3)}
  expected = inner.update(grads, inner.init(params))
  actual = tx.update(grads, tx.init(params), value=jnp.asarray(1.0))
  for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(a, b)


def test_place_scalars_replicates_uncommitted_scalars_on_the_params_mesh():
  mesh = jax.make_mesh((8,), ("x",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x"))
  params = jax.device_put(jnp.arange(8.0), sharding)
  state = (jnp.zeros([], jnp.int32), jnp.zeros_like(params),
           jnp.asarray(2.5, jnp.bfloat16), jax.random.key(0))
  placed = _public.place_scalars(state, params)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  for leaf in (placed[0], placed[2], placed[3]):  # a typed PRNG key too
    assert leaf.sharding == replicated
  assert jax.random.key_data(placed[3]).tolist() == jax.random.key_data(
      state[3]).tolist()
  assert placed[1] is state[1]  # already committed: left alone
  assert placed[2].dtype == jnp.bfloat16 and float(placed[2]) == 2.5
  assert not placed[0].weak_type


def test_place_scalars_leaves_uncommitted_params_alone():
  state = (jnp.zeros([], jnp.int32),)
  for params in (jnp.ones(3), np.ones(3)):
    placed = _public.place_scalars(state, params)
    assert placed[0] is state[0]


@pytest.mark.parametrize("state", [{"count": 0}, [None, {"mu": 1}]])
def test_plain_dict_or_list_state_gets_the_restore_hint(state):
  with pytest.raises(TypeError, match="restored without a target"):
    _public.check_state_form("opt", state)
