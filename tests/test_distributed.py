"""optfree optimizers under sharded jit, pmap and two jax.distributed processes.

Every run is compared with the same single-device run of the problem in
tests/distributed_problem.py (float64, so that summation order is the only
difference). The root conftest gives 8 virtual CPU devices. Every update gets
the loss, ``value=`` (see tests/optimizer_table.py): under pmap both the
gradients and the loss are ``pmean``-ed.
"""

import functools
import os
import pathlib
import socket
import subprocess
import sys

import re

import jax
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
import numpy as np
import pytest

from tests import distributed_problem as problem
from tests.optimizer_table import OPTIMIZER_IDS
from tests.optimizer_table import OPTIMIZERS
from tests.optimizer_table import stand_in_loss

pytestmark = pytest.mark.usefixtures("x64")

DEVICES = 8
RTOL = 1e-10
ATOL = 1e-13
REPO = pathlib.Path(__file__).resolve().parent.parent
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all",
               "collective-permute")


@functools.lru_cache(maxsize=None)
def _single_device_run(name):
  """Final arrays of the run on one device, flattened to name -> array."""
  (entry,) = [e for e in OPTIMIZERS if e.name == name]
  with jax.enable_x64(True):
    tx = entry.make()
    device = jax.devices()[0]
    params = jax.device_put(problem.init_params(), device)
    state = tx.init(params)
    step = jax.jit(problem.train_step(tx))
    for batch in problem.batches():
      params, state = step(params, state, jax.device_put(batch, device))
    arrays = problem.final_arrays(entry, params, state)
    return {k: np.asarray(v) for k, v in problem.flatten(name, arrays).items()}


def _assert_matches_single_device(entry, arrays):
  expected = _single_device_run(entry.name)
  actual = {name: np.asarray(value) for name, value
            in problem.flatten(entry.name, arrays).items()}
  assert actual.keys() == expected.keys()
  for name, value in expected.items():
    np.testing.assert_allclose(actual[name], value, rtol=RTOL, atol=ATOL,
                               err_msg=name)
  initial = problem.flatten(entry.name, {"params": problem.init_params()})
  assert not np.allclose(actual[f"{entry.name}['params']['hidden']['kernel']"],
                         initial[f"{entry.name}['params']['hidden']['kernel']"])


def test_there_are_eight_devices():
  assert jax.device_count() == DEVICES


MESH = jax.make_mesh((DEVICES,), ("model",), axis_types=(AxisType.Auto,))
REPLICATED = NamedSharding(MESH, PartitionSpec())
# Tensor-parallel layout: the hidden units are split over the devices.
PARAM_SHARDINGS = {
    "hidden": {"kernel": NamedSharding(MESH, PartitionSpec(None, "model")),
               "bias": NamedSharding(MESH, PartitionSpec("model"))},
    "out": {"kernel": NamedSharding(MESH, PartitionSpec("model", None))},
}
_sharded_value_and_grad = jax.jit(
    jax.value_and_grad(problem.loss),
    out_shardings=(REPLICATED, PARAM_SHARDINGS))


def _assert_state_sharded_like_params(state, params):
  """Param-shaped state leaves sharded as their param, scalars replicated."""
  by_shape = {leaf.shape: leaf.sharding for leaf in jax.tree.leaves(params)}
  assert len(by_shape) == len(jax.tree.leaves(params)), "shapes must differ"
  buffers = 0
  for leaf in jax.tree.leaves(state):
    if leaf.ndim == 0:
      assert leaf.sharding.is_fully_replicated
      continue
    assert leaf.shape in by_shape, f"state leaf of shape {leaf.shape}"
    assert leaf.sharding.is_equivalent_to(by_shape[leaf.shape], leaf.ndim), (
        f"{leaf.shape}: {leaf.sharding} != {by_shape[leaf.shape]}")
    assert not leaf.sharding.is_fully_replicated
    buffers += 1
  assert buffers >= len(by_shape)


def _collectives(compiled_text):
  """(op, result shape) of each collective instruction of compiled HLO."""
  ops = "|".join(COLLECTIVES)
  return re.findall(rf" = (.+?) ({ops})(?:-start)?\(", compiled_text)


def _scalar_shapes(shape):
  """The element shapes of an HLO result shape, a tuple or not."""
  return re.findall(r"\w+\[([\d,]*)\]", shape)


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_sharded_jit_keeps_state_sharded_and_matches_one_device(entry):
  tx = entry.make()
  params = jax.device_put(problem.init_params(), PARAM_SHARDINGS)
  # Eager init, as users write it: zeros_like then inherits each param's
  # sharding (under jit an unconstrained constant lands on one device).
  state = tx.init(params)
  _assert_state_sharded_like_params(state, params)

  def apply_update(grads, state, params, value):
    updates, state = tx.update(grads, state, params, value=value)
    return jax.tree.map(lambda p, u: p + u, params, updates), state

  batches = [jax.device_put(batch, REPLICATED) for batch in problem.batches()]
  value, grads = _sharded_value_and_grad(params, batches[0])
  step = jax.jit(apply_update).lower(grads, state, params, value).compile()
  collectives = _collectives(step.as_text())
  if entry.elementwise:
    # The optimizer step is elementwise: no collective at all.
    found = [name for name in COLLECTIVES if name in step.as_text()]
    assert not found, f"the sharded update communicates: {found}"
  else:
    # ScheduleFree+: its two global sums (the L1 norm of the gradient and
    # <g, z - y>), each a partial sum per leaf, are the only communication:
    # scalar all-reduces, no param gathered.
    assert collectives, "no all-reduce of the global sums"
    assert {op for _, op in collectives} == {"all-reduce"}, collectives
    scalars = [element for shape, _ in collectives
               for element in _scalar_shapes(shape)]
    assert scalars and all(element == "" for element in scalars), collectives
    assert len(scalars) <= 2 * len(jax.tree.leaves(params)), collectives
  for batch in batches:
    value, grads = _sharded_value_and_grad(params, batch)
    params, state = step(grads, state, params, value)
  jax.tree.map(_assert_equivalent, params, PARAM_SHARDINGS)
  _assert_state_sharded_like_params(state, params)
  _assert_matches_single_device(
      entry, problem.final_arrays(entry, params, state)
  )


def _assert_equivalent(leaf, sharding):
  assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim), (
      f"{leaf.sharding} != {sharding}")


def _pmap_run(tx, pmean_value=True):
  """Data-parallel over the devices: each gets an eighth of every batch."""

  def step(params, state, batch):
    value, grads = jax.value_and_grad(problem.loss)(params, batch)
    grads = jax.lax.pmean(grads, "devices")
    if pmean_value:
      value = jax.lax.pmean(value, "devices")
    updates, state = tx.update(grads, state, params, value=value)
    return jax.tree.map(lambda p, u: p + u, params, updates), state

  step = jax.pmap(step, axis_name="devices")
  replicate = lambda tree: jax.tree.map(
      lambda a: np.broadcast_to(a, (DEVICES,) + np.shape(a)), tree)
  params = replicate(problem.init_params())
  state = jax.pmap(tx.init)(params)
  for inputs, targets in problem.batches():
    split = lambda a: a.reshape((DEVICES, -1) + a.shape[1:])
    params, state = step(params, state, (split(inputs), split(targets)))
  return params, state


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_pmap_with_pmean_gradients_and_loss_matches_one_device(entry):
  # The mean of the per-device losses (and gradients) over equal shards is
  # the loss (and gradient) of the whole batch, which the one-device run
  # takes.
  params, state = _pmap_run(entry.make())

  for leaf in jax.tree.leaves((params, state)):
    copies = np.asarray(leaf)
    for copy in copies[1:]:
      np.testing.assert_array_equal(copy, copies[0])
  first = lambda tree: jax.tree.map(lambda a: np.asarray(a)[0], tree)
  _assert_matches_single_device(
      entry, problem.final_arrays(entry, first(params), first(state))
  )


NEEDS_VALUE = [entry for entry in OPTIMIZERS if entry.needs_value]


@pytest.mark.parametrize("entry", NEEDS_VALUE,
                         ids=[entry.name for entry in NEEDS_VALUE])
def test_pmap_without_pmean_of_the_loss_lets_replicas_drift(entry):
  # Why the loss must be pmean-ed too: each replica's own loss gives it its
  # own step size, and the copies of the params part.
  params, _ = _pmap_run(entry.make(), pmean_value=False)
  kernels = np.asarray(params["hidden"]["kernel"])
  assert not all(np.array_equal(kernel, kernels[0]) for kernel in kernels[1:])


def _free_port():
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    return sock.getsockname()[1]


# One optimizer per module keeps the two processes' compilations few; the
# sharded and pmap tests above cover every optimizer.
MULTIPROCESS_OPTIMIZERS = ("schedule_free_adamw", "adabound", "lion")


def test_two_processes_data_parallel_match_one_device(tmp_path):
  """jax.distributed on localhost: 2 processes x 4 CPU devices, gloo."""
  processes, per_process = 2, DEVICES // 2
  env = {
      **os.environ,
      "XLA_FLAGS": f"--xla_force_host_platform_device_count={per_process}",
      "JAX_PLATFORMS": "cpu",
      "PYTHONPATH": os.pathsep.join(
          filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
  }
  port = _free_port()
  outputs = [tmp_path / f"process{index}.npz" for index in range(processes)]
  workers = [
      subprocess.Popen(
          [sys.executable, str(REPO / "tests" / "distributed_problem.py"),
           str(index), str(processes), str(port), str(outputs[index]),
           ",".join(MULTIPROCESS_OPTIMIZERS)],
          env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
          text=True)
      for index in range(processes)
  ]
  logs = []
  try:
    for worker in workers:
      logs.append(worker.communicate(timeout=240)[0])
  finally:
    for worker in workers:
      if worker.poll() is None:
        worker.kill()
  for index, (worker, log) in enumerate(zip(workers, logs)):
    assert worker.returncode == 0, f"process {index} failed:\n{log[-4000:]}"
    assert f"process {index} of 2: 4 local of 8 devices" in log

  results = [dict(np.load(path)) for path in outputs]
  assert results[0].keys() == results[1].keys()
  for name in results[0]:
    np.testing.assert_array_equal(results[0][name], results[1][name],
                                  err_msg=name)
  for name in MULTIPROCESS_OPTIMIZERS:
    arrays = {k: v for k, v in results[0].items() if k.startswith(name + "[")}
    expected = _single_device_run(name)
    assert arrays.keys() == expected.keys()
    for name, value in expected.items():
      np.testing.assert_allclose(arrays[name], value, rtol=RTOL, atol=ATOL,
                                 err_msg=name)


# Compiling once with sharded params ---------------------------------------

from tests.optimizer_table import PUBLIC, PUBLIC_IDS  # noqa: E402

# PARAM_SHARDINGS without its trailing None: jit returns P('model', None) as
# the equal P('model'), and the params alone would then compile a second
# program, whatever the optimizer.
CANONICAL_SHARDINGS = {
    **PARAM_SHARDINGS,
    "out": {"kernel": NamedSharding(MESH, PartitionSpec("model"))},
}


def _counting_step(tx):
  """A jitted step and the list its tracing appends to (one entry a trace)."""
  traces = []

  @jax.jit
  def step(params, state, grads):
    traces.append(None)
    updates, state = tx.update(grads, state, params,
                               value=stand_in_loss(params))
    return jax.tree.map(lambda p, u: p + u, params, updates), state

  return step, traces


def _run_counting(tx, params, steps=3):
  state = tx.init(params)
  step, traces = _counting_step(tx)
  for index in range(steps):
    grads = jax.tree.map(lambda p, i=index: p * 0.5 - i, params)
    params, state = step(params, state, grads)
  return state, step, traces


@pytest.mark.parametrize("entry, _", PUBLIC, ids=PUBLIC_IDS)
def test_sharded_step_compiles_once_after_eager_init(entry, _):
  # optax's own scalars (counts) start uncommitted on device 0; the first
  # step returned them replicated on the mesh, so the second call compiled
  # a second program. init now places them there from the start.
  params = jax.device_put(problem.init_params(), CANONICAL_SHARDINGS)
  tx = entry.make()
  for leaf in jax.tree.leaves(tx.init(params)):
    assert leaf.committed
    if leaf.ndim == 0:
      assert leaf.sharding == REPLICATED, leaf.sharding
  state, step, traces = _run_counting(tx, params)
  assert len(traces) == 1 and step._cache_size() == 1  # pylint: disable=protected-access
  for leaf in jax.tree.leaves(state):
    if leaf.ndim == 0:
      assert leaf.sharding == REPLICATED


@pytest.mark.parametrize("where", ["device_1", "uncommitted"])
@pytest.mark.parametrize("entry, _", PUBLIC, ids=PUBLIC_IDS)
def test_single_device_step_compiles_once(entry, _, where):
  # Committed to one device (not the default one), or not committed at all:
  # the scalars follow, or stay uncommitted as the params do.
  arrays = jax.tree.map(jax.numpy.asarray, problem.init_params())
  params = (jax.device_put(arrays, jax.devices()[1]) if where == "device_1"
            else arrays)
  state, step, traces = _run_counting(entry.make(), params)
  assert len(traces) == 1 and step._cache_size() == 1  # pylint: disable=protected-access
  devices = {leaf.sharding.device_set == {jax.devices()[1]}
             for leaf in jax.tree.leaves(state)}
  assert devices == {where == "device_1"}


@pytest.mark.parametrize("entry, _", PUBLIC, ids=PUBLIC_IDS)
def test_init_under_jit_equals_eager_init(entry, _):
  # Tracers have no placement to follow: init under jit (or eval_shape, for
  # a checkpoint's abstract state) builds the same state as before.
  params = jax.device_put(problem.init_params(), PARAM_SHARDINGS)
  tx = entry.make()
  eager, traced = tx.init(params), jax.jit(tx.init)(params)
  assert jax.tree.structure(eager) == jax.tree.structure(traced)
  for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(traced)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  abstract = jax.eval_shape(tx.init, params)
  assert jax.tree.structure(abstract) == jax.tree.structure(eager)
