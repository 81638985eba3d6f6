"""Checkpoint and restart are bit-exact, for every optfree optimizer.

A run is interrupted mid-way, its (params, opt_state) saved and restored into a
fresh process-like start (a template built from ``tx.init``, as a training
script would), and continued. The resumed run must equal the uninterrupted one
bit for bit: through orbax-checkpoint's ``StandardCheckpointer`` and through
plain numpy (``np.savez`` of the flattened leaves plus the tree's key paths).
Each update gets ``value=``, a stand-in loss of the params (see
tests/optimizer_table.py), so a resumed run gets the same values too.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import optfree
from tests.optimizer_table import OPTIMIZER_IDS, OPTIMIZERS
from tests.optimizer_table import small_params as _params
from tests.optimizer_table import stand_in_loss

STEPS = 8
INTERRUPT_AT = 3  # inside the table's warmup (2 steps) is too early; past it


def _gradient(step):
  return jax.tree.map(lambda p: jnp.cos(p * (step + 1.5)) - 0.3, _params())


def _step(tx, params, state, gradient):
  updates, state = tx.update(gradient, state, params,
                             value=stand_in_loss(params))
  return optax.apply_updates(params, updates), state


@functools.lru_cache(maxsize=None)
def _compiled(name):
  """(tx, jitted step) per optimizer, each built and compiled once."""
  entry = next(entry for entry in OPTIMIZERS if entry.name == name)
  tx = entry.make()
  return tx, jax.jit(functools.partial(_step, tx))


@functools.lru_cache(maxsize=None)
def _uninterrupted_and_midway(name):
  tx, step = _compiled(name)
  params = _params()
  return (_run(step, params, tx.init(params), 0, STEPS),
          _run(step, params, tx.init(params), 0, INTERRUPT_AT))


def _run(step, params, state, start, stop):
  for index in range(start, stop):
    params, state = step(params, state, _gradient(index))
  return params, state


def _assert_identical(actual, expected):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    a, e = jnp.asarray(a), jnp.asarray(e)
    assert (a.dtype, a.shape) == (e.dtype, e.shape)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def _template(tx):
  """What a restarting script holds before restoring: shapes and dtypes."""
  params = _params()
  return jax.eval_shape(lambda: (params, tx.init(params)))


def _orbax_round_trip(tree, template, directory):
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(directory / "checkpoint", tree)
  checkpointer.wait_until_finished()
  abstract = jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(
          leaf.shape, leaf.dtype,
          sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])),
      template)
  restored = checkpointer.restore(directory / "checkpoint", abstract)
  checkpointer.close()
  return restored


def _key_paths(tree):
  return np.asarray([jax.tree_util.keystr(path) for path, _ in
                     jax.tree_util.tree_flatten_with_path(tree)[0]])


def _numpy_round_trip(tree, template, directory):
  path = directory / "checkpoint.npz"
  leaves = jax.tree.leaves(tree)
  np.savez(path, key_paths=_key_paths(tree),
           **{f"leaf_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)})
  with np.load(path) as saved:
    # The saved layout must be the one the restarting script expects.
    np.testing.assert_array_equal(saved["key_paths"], _key_paths(template))
    loaded = [jnp.asarray(saved[f"leaf_{i}"], dtype=spec.dtype)
              for i, spec in enumerate(jax.tree.leaves(template))]
  return jax.tree.unflatten(jax.tree.structure(template), loaded)


ROUND_TRIPS = {"orbax": _orbax_round_trip, "numpy": _numpy_round_trip}


@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_resumed_run_is_bit_identical(entry, round_trip, tmp_path):
  uninterrupted, midway = _uninterrupted_and_midway(entry.name)
  # A restarted script builds its optimizer and its step anew.
  restarted_tx = entry.make()
  restored = ROUND_TRIPS[round_trip](midway, _template(restarted_tx), tmp_path)
  _assert_identical(restored, midway)
  restarted_step = jax.jit(functools.partial(_step, restarted_tx))
  resumed = _run(restarted_step, *restored, INTERRUPT_AT, STEPS)

  _assert_identical(resumed, uninterrupted)
  assert not np.array_equal(uninterrupted[0]["dense"]["kernel"],
                            midway[0]["dense"]["kernel"])


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_state_holds_only_strongly_typed_arrays(entry):
  # Python scalars or objects in the state would not survive a checkpoint
  # (nor be donatable or shardable); every leaf must be an array. A restored
  # leaf is strongly typed, so a weakly typed one would promote differently
  # (bf16 * weak f32 is bf16, bf16 * f32 is f32) and retrace after a restart.
  tx, step = _compiled(entry.name)
  params = _params()
  state = step(params, tx.init(params), _gradient(0))[1]
  for leaf in jax.tree.leaves((tx.init(params), state)):
    assert isinstance(leaf, jax.Array), type(leaf)
    assert not leaf.weak_type


# Restoring without a target ------------------------------------------------

SCHEDULE_FREE = [entry for entry in OPTIMIZERS if entry.schedule_free]
RESTORE_WORDS = r"restored without a target.*jax\.eval_shape\(opt\.init, params\)"


def _save(tree, directory):
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(directory / "checkpoint", tree)
  checkpointer.wait_until_finished()
  return checkpointer


@pytest.mark.parametrize("nested", [False, True], ids=["bare", "in_chain"])
@pytest.mark.parametrize("entry", SCHEDULE_FREE,
                         ids=[entry.name for entry in SCHEDULE_FREE])
def test_eval_params_on_state_restored_without_target_says_how(
    entry, nested, tmp_path):
  # orbax without a target returns dicts (and lists for tuples): eval_params
  # used to say only that there was no ScheduleFreeState.
  tx = optax.chain(optax.clip(1.0), entry.make()) if nested else entry.make()
  _, (params, state) = _uninterrupted_and_midway(entry.name)
  if nested:
    state = tx.init(params)
  checkpointer = _save({"params": params, "opt_state": state}, tmp_path)
  restored = checkpointer.restore(tmp_path / "checkpoint")
  checkpointer.close()
  where = "opt_state[1]" if nested else "opt_state"
  with pytest.raises(ValueError, match=rf"plain dict \(at {re.escape(where)}\)"
                     rf".*{RESTORE_WORDS}"):
    optfree.eval_params(restored["opt_state"], restored["params"])


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_update_on_state_restored_without_target_says_how(entry, tmp_path):
  tx, _ = _compiled(entry.name)
  _, (params, state) = _uninterrupted_and_midway(entry.name)
  checkpointer = _save({"params": params, "opt_state": state}, tmp_path)
  restored = checkpointer.restore(tmp_path / "checkpoint")
  checkpointer.close()
  with pytest.raises(TypeError, match=RESTORE_WORDS):
    tx.update(_gradient(0), restored["opt_state"], restored["params"],
              value=stand_in_loss(params))


def test_documented_save_restore_recipe(tmp_path):
  # The recipe of the docs, step by step, with a CheckpointManager.
  tx, step = _compiled("schedule_free_adamw")
  params = _params()
  opt_state = tx.init(params)
  for index in range(INTERRUPT_AT):
    params, opt_state = step(params, opt_state, _gradient(index))

  manager = ocp.CheckpointManager(tmp_path / "run")
  manager.save(INTERRUPT_AT, args=ocp.args.StandardSave(
      {"params": params, "opt_state": opt_state}))
  manager.wait_until_finished()

  # A restarted script: the abstract state from tx.init, no real arrays.
  abstract = jax.eval_shape(
      lambda p: {"params": p, "opt_state": tx.init(p)}, _params())
  restored = manager.restore(manager.latest_step(),
                             args=ocp.args.StandardRestore(abstract))
  manager.close()
  assert isinstance(restored["opt_state"], optfree.ScheduleFreeState)
  _assert_identical(restored, {"params": params, "opt_state": opt_state})
  np.testing.assert_array_equal(
      optfree.eval_params(restored["opt_state"], restored["params"])["scale"],
      optfree.eval_params(opt_state, params)["scale"])
