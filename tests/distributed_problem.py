"""The problem that tests/test_distributed.py trains on one and on many devices.

Also the worker of its two-process test: run as a script, it joins a
``jax.distributed`` job on localhost (CPU collectives over gloo), trains the
named table optimizers data-parallel over the global devices and writes the
final params (and Schedule-Free evaluation points) to an ``.npz`` file::

  python tests/distributed_problem.py PROCESS NUM_PROCESSES PORT OUT.npz NAMES

(NAMES: comma-separated names of tests/optimizer_table.py entries.)

The caller sets ``XLA_FLAGS`` (devices per process) and ``PYTHONPATH``.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optfree

STEPS = 5
BATCH = 64  # divisible by the 8 devices
FEATURES, HIDDEN, OUTPUTS = 6, 16, 3


def init_params():
  rng = np.random.default_rng(0)
  return {
      "hidden": {"kernel": rng.normal(size=(FEATURES, HIDDEN)) / 2,
                 "bias": rng.normal(size=(HIDDEN,)) / 4},
      "out": {"kernel": rng.normal(size=(HIDDEN, OUTPUTS)) / 4},
  }


def batches():
  rng = np.random.default_rng(1)
  return [(rng.normal(size=(BATCH, FEATURES)),
           rng.normal(size=(BATCH, OUTPUTS))) for _ in range(STEPS)]


def loss(params, batch):
  inputs, targets = batch
  layer = params["hidden"]
  hidden = jnp.tanh(inputs @ layer["kernel"] + layer["bias"])
  return jnp.mean((hidden @ params["out"]["kernel"] - targets) ** 2)


def train_step(tx):
  """One step on a batch; under jit the batch may be sharded over devices.

  The optimizer gets the loss too, ``value=`` (ScheduleFree+ needs it; the
  others ignore it).
  """

  def step(params, state, batch):
    value, grads = jax.value_and_grad(loss)(params, batch)
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  return step


def final_arrays(entry, params, state):
  """The arrays a run is compared by: params, and x for Schedule-Free."""
  arrays = {"params": params}
  if entry.schedule_free:
    arrays["x"] = optfree.eval_params(state, params)
  return arrays


def flatten(prefix, tree):
  return {
      prefix + jax.tree_util.keystr(path): leaf
      for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }


def _worker(process_id, num_processes, port, out_path, names):
  from jax.sharding import AxisType
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec

  from tests.optimizer_table import OPTIMIZERS

  jax.config.update("jax_enable_x64", True)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      f"localhost:{port}", num_processes=num_processes, process_id=process_id
  )
  mesh = jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(AxisType.Auto,))
  replicated = NamedSharding(mesh, PartitionSpec())
  by_rows = NamedSharding(mesh, PartitionSpec("data"))

  def global_array(value, sharding):
    # Every process holds the whole value; each contributes its own shards.
    value = np.asarray(value)
    return jax.make_array_from_callback(
        value.shape, sharding, lambda index: value[index]
    )

  data = [jax.tree.map(lambda a: global_array(a, by_rows), batch)
          for batch in batches()]
  results = {}
  for entry in [entry for entry in OPTIMIZERS if entry.name in names]:
    tx = entry.make()
    params = jax.tree.map(lambda a: global_array(a, replicated), init_params())
    # Eager init places the scalar state on the global mesh (each process
    # builds its shards); under jit it is placed by the compiler. Both agree.
    state = tx.init(params)
    for eager, traced in zip(jax.tree.leaves(state),
                             jax.tree.leaves(jax.jit(tx.init)(params))):
      if eager.ndim == 0:  # on all 8 devices of both processes
        assert eager.sharding == replicated, eager.sharding
      np.testing.assert_array_equal(np.asarray(eager.addressable_data(0)),
                                    np.asarray(traced.addressable_data(0)))
    step = jax.jit(train_step(tx))
    for batch in data:
      params, state = step(params, state, batch)
    # Replicated everywhere: each process's first local copy is the whole.
    local = lambda tree: jax.tree.map(
        lambda leaf: np.asarray(leaf.addressable_data(0)), tree)
    assert all(leaf.is_fully_replicated for leaf in jax.tree.leaves(params))
    arrays = final_arrays(entry, local(params), local(state))
    results.update(flatten(entry.name, arrays))
  np.savez(out_path, **results)
  print(f"process {jax.process_index()} of {jax.process_count()}: "
        f"{jax.local_device_count()} local of {jax.device_count()} devices")


if __name__ == "__main__":
  _worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
          sys.argv[5].split(","))
