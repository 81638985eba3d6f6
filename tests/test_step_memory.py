"""A donated, jitted step writes each buffer once and needs no scratch buffer.

Two kinds of checks, on two compilers.

CPU performance tests (``test_cpu_*``, XLA:CPU; they run everywhere). An
optimizer step is memory-bound. Each update is laid out so that every old
state buffer has a single reader (its own in-place update) and no shared
subexpression is stored, so XLA updates params and state in place with one
loop per output; a regression (a copy of z or m, a stored direction, a state
output computed in a second loop) shows up here as a temporary allocation as
large as a param or as an extra param-sized loop. The benchmark reports the
temporaries too (benchmarks/step_time.py, column "temps"). These read
XLA:CPU's HLO, whose layout of a step is its own: they pin what the CPU
speed figures were measured with, not what other backends compile.

TPU checks (``test_tpu_*``; they need libtpu and are skipped without it,
which the default dev venv and CI's main job are). Each optimizer's step is
compiled ahead of time for TPU v5e, on one chip and on a 2x2 slice with
FSDP-sharded params and state, by benchmarks/compiled_step.py (whose
docstring says how the program is read); no TPU is needed. The program must
read and write each param-sized buffer once, keep no param-sized temporary,
and on the slice use no collective except the scalar reductions an optimizer
needs. Run them in a venv with ``jax[tpu]`` (docs/guides/performance.md,
"The TPU program").
"""

import importlib.util
import os
import re
import sys

import jax
import jax.numpy as jnp
import optax
import pytest

from optimizer_table import OPTIMIZER_IDS, OPTIMIZERS

SHAPE = (256, 256)

# Stochastic rounding writes bfloat16 only (float32 is written as with
# nearest rounding); its random bits are computed inside the loops too.
CASES = [(jnp.float32, "nearest"), (jnp.bfloat16, "nearest"),
         (jnp.bfloat16, "stochastic")]
CASE_IDS = ["float32", "bfloat16", "bfloat16-stochastic"]

# The known exception, one param-sized temporary (recorded, not hidden): the
# wrapper stores the base optimizer's update, which both z and y read; the
# wrapper cannot recompute it without running the base optimizer twice.
ONE_TEMPORARY = {"schedule_free_wrapper"}

# ScheduleFree+ on XLA:CPU, recorded as measured, not laid out for CPU (the
# plain math is what XLA:TPU needs): its y update reads the old z after z's
# write, so XLA:CPU copies z (one temporary in float32); in bfloat16 it also
# stores the float32 converts of g, y and z that its two global sums and the
# update both read (3 float32 buffers: 6 bfloat16 params' bytes), with a
# loop per copy, and those converts run in loops with no scalar operand. On
# TPU it is one pass for the sums and one for the update (the TPU checks
# below). Keys: case ids; values: (param-sized temporaries, extra
# param-sized loops).
SCHEDULE_FREE_PLUS_ON_CPU = {"float32": (1, 1), "bfloat16": (7, 4),
                             "bfloat16-stochastic": (7, 4)}


def _cpu_allowance(entry, dtype, rounding):
  if entry.name != "schedule_free_plus":
    return None
  case = CASE_IDS[CASES.index((dtype, rounding))]
  return SCHEDULE_FREE_PLUS_ON_CPU[case]


def _compiled_step(entry, dtype, rounding):
  params = {"w": jnp.ones(SHAPE, dtype), "b": jnp.ones(SHAPE[:1], dtype)}
  optimizer = entry.make(rounding=rounding)

  def step(params, state, grads):
    # A loss too (tests/optimizer_table.py: ScheduleFree+ needs it).
    updates, state = optimizer.update(grads, state, params,
                                      value=jnp.float32(1.0))
    return optax.apply_updates(params, updates), state

  args = (params, optimizer.init(params), params)
  return jax.jit(step, donate_argnums=(0, 1)).lower(*args).compile(), args


@pytest.mark.parametrize("dtype, rounding", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_cpu_donated_step_has_no_param_sized_temporary(entry, dtype,
                                                       rounding):
  compiled, _ = _compiled_step(entry, dtype, rounding)
  param_bytes = SHAPE[0] * SHAPE[1] * jnp.dtype(dtype).itemsize
  allowed = 0
  if entry.name in ONE_TEMPORARY:
    # The stored base update is float32 when the wrapper rounds bfloat16
    # stochastically (its math runs in float32): two bfloat16 params' bytes.
    allowed = 2 if rounding == "stochastic" else 1
  if _cpu_allowance(entry, dtype, rounding) is not None:
    allowed = _cpu_allowance(entry, dtype, rounding)[0]
  temporaries = compiled.memory_analysis().temp_size_in_bytes / param_bytes
  # Fractions are scalars and small leaves; a whole buffer is a regression.
  assert temporaries < allowed + 1


@pytest.mark.parametrize("dtype, rounding", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_cpu_each_param_sized_output_is_written_by_one_loop(entry, dtype,
                                                           rounding):
  # A step is memory-bound: every extra loop over a param-sized buffer costs
  # a full pass of memory traffic even when it needs no temporary (e.g. a
  # state output computed as a second loop over another output).
  compiled, args = _compiled_step(entry, dtype, rounding)
  outputs = sum(leaf.shape == SHAPE for leaf in jax.tree.leaves(args[:2]))
  loops = _param_sized_loops(compiled)
  allowed = 1 if entry.name in ONE_TEMPORARY else 0
  if _cpu_allowance(entry, dtype, rounding) is not None:
    allowed = _cpu_allowance(entry, dtype, rounding)[1]
  assert len(loops) == outputs + allowed, loops


def _param_sized_fusions(compiled):
  """(name, fused computation's text) of each param-sized loop fusion."""
  text = compiled.as_text()
  bodies = dict(re.findall(r"\n(%[\w.-]+) \(.*?\n(.*?)\n\}", text, re.S))
  return [(name, bodies[body]) for name, body in re.findall(
      r"(%[\w.-]+) = \w+\[256,256\]\{1,0\} fusion\(.*calls=(%[\w.-]+)",
      text.split("\nENTRY ")[1])]


def _param_sized_loops(compiled):
  entry_computation = compiled.as_text().split("\nENTRY ")[1]
  return [op for op in re.findall(
      r"= \w+\[256,256\]\{1,0\} ([\w-]+)\(", entry_computation)
          if op not in ("parameter", "get-tuple-element", "bitcast")]


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_cpu_each_stochastic_loop_draws_its_bits_once(entry):
  # XLA:CPU computes each param-sized output in a loop of its own, and each
  # such loop hashes the bits of the one buffer it writes: the hash is most
  # of stochastic rounding's cost (low-precision guide, "Cost"). A loop that
  # also recomputed another buffer's rounding (XLA fusing the rounding into
  # a loop that reads the written buffer, as it does when the rounding ends
  # in a bitcast rather than a float conversion) would hash twice and keep a
  # copy of the old buffer. (So two buffers could share one draw only inside
  # one loop, which XLA:CPU does not emit.)
  compiled, _ = _compiled_step(entry, jnp.bfloat16, "stochastic")
  hashes = [_hashes(body) for _, body in _param_sized_fusions(compiled)]
  assert max(hashes) == 1, hashes  # (loops that write float32 draw none)


def _hashes(body):
  """The hashes in a loop, from its elementwise uint32 multiplications.

  Each hash multiplies twice in MurmurHash3's finalizer, after the Weyl
  step's multiplication of the element index, which the hashes of one loop
  share (the key is added after it).
  """
  multiplies = len(re.findall(r"= u32\[256,256\]\S* multiply\(", body))
  assert multiplies == 0 or multiplies % 2 == 1, body
  return multiplies // 2


# Not float16 itself: XLA:CPU recomputes a new float16 state buffer inside
# the loop that writes the params, reading the old one, which it then copies
# (1 to 4 param-sized temporaries, and a loop per copy), with nearest
# rounding as well; bfloat16 steps are laid out as float32 ones. Stochastic
# rounding adds nothing to that, except to the wrapper: one more copy of z.
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_cpu_float16_stochastic_step_has_the_nearest_step_layout(entry):
  extra = 1 if entry.name in ONE_TEMPORARY else 0
  layouts = {}
  for rounding in ("nearest", "stochastic"):
    compiled, _ = _compiled_step(entry, jnp.float16, rounding)
    temporaries = compiled.memory_analysis().temp_size_in_bytes / (
        SHAPE[0] * SHAPE[1] * 2)
    layouts[rounding] = (round(temporaries), len(_param_sized_loops(compiled)))
  assert layouts["stochastic"][0] <= layouts["nearest"][0] + extra, layouts
  assert layouts["stochastic"][1] <= layouts["nearest"][1] + extra, layouts


@pytest.mark.parametrize("dtype, rounding", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_cpu_each_param_sized_loop_has_a_scalar_operand(entry, dtype,
                                                       rounding):
  # XLA:CPU compiles an elementwise loop with no scalar operand (e.g. a bare
  # maximum of two buffers) with a slower emitter than a loop with one: 2-3x
  # the time in float32 once the buffers sit in cache. AMSBound's running
  # maximum was such a loop, 0.75x optax.amsgrad at 1M params, until it
  # multiplied by an exact 1 (benchmarks/step_time.py).
  compiled, _ = _compiled_step(entry, dtype, rounding)
  loops = _param_sized_fusions(compiled)
  assert loops
  without_scalar = [name for name, body in loops if "broadcast(" not in body]
  if _cpu_allowance(entry, dtype, rounding) is not None:
    # ScheduleFree+'s copies (see SCHEDULE_FREE_PLUS_ON_CPU): one loop per
    # copied buffer, as counted there.
    assert len(without_scalar) <= _cpu_allowance(entry, dtype, rounding)[1]
    return
  assert not without_scalar


# ---------------------------------------------------------------------------
# TPU checks: the step compiled for TPU v5e (benchmarks/compiled_step.py).


def _load_benchmark():
  path = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                      "benchmarks", "compiled_step.py")
  spec = importlib.util.spec_from_file_location("compiled_step", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


# Importing it needs no libtpu; it lists what it compiles: the table's
# optimizers (and ScheduleFree+, whose update takes the loss, until the
# table has it).
COMPILED_STEP = _load_benchmark()
TPU_OPTIMIZERS = COMPILED_STEP.optfree_optimizers()
TPU_IDS = [optimizer.name for optimizer in TPU_OPTIMIZERS]
TPU_TOPOLOGIES = tuple(COMPILED_STEP.TOPOLOGIES)
TPU_CASES = COMPILED_STEP.CASES

# Scalars an optimizer must sum over every chip of an FSDP slice:
# ScheduleFree+'s Polyak step needs ||g||_1 and <g, z - y> over all params.
# Every other optimizer is elementwise and needs no collective.
SCALAR_ALL_REDUCES = {"schedule_free_plus": 2}
# Param-sized buffers of each leaf read a second time, by necessity: the
# same two sums are complete only after a first pass over g, z and y, one
# reduction kernel per leaf before the update's.
SECOND_READS = {"schedule_free_plus": 3}
# The known split (recorded, not hidden): on the slice, in bfloat16, XLA:TPU
# updates the wrapper's smallest leaf (256 params per chip) with two kernels
# that hand one buffer over in the chip's vector memory; the HBM traffic
# stays at the floor.
VMEM_HANDOFFS = {("schedule_free_wrapper", "2x2 FSDP", "bfloat16"): 1}


@pytest.fixture(scope="module")
def compiled_step():
  pytest.importorskip(
      "libtpu", reason="the TPU checks compile for TPU v5e ahead of time "
      "and need libtpu, which the default dev venv (and CI's main job) does "
      "not install: pip install 'jax[tpu]' in a venv of its own, see "
      "docs/guides/performance.md")
  return COMPILED_STEP


_TPU_RECORDS = {}


def _tpu_record(optimizer, topology, dtype, rounding):
  key = (optimizer.name, topology, dtype, rounding)
  if key not in _TPU_RECORDS:
    compiled, args = COMPILED_STEP.compile_step(
        optimizer.make(rounding), jnp.dtype(dtype),
        COMPILED_STEP.TOPOLOGIES[topology], optimizer.needs_value)
    _TPU_RECORDS[key] = COMPILED_STEP.analyse(compiled, args)
  return _TPU_RECORDS[key]


@pytest.mark.parametrize("topology", TPU_TOPOLOGIES)
@pytest.mark.parametrize("dtype, rounding", TPU_CASES, ids=CASE_IDS)
@pytest.mark.parametrize("optimizer", TPU_OPTIMIZERS, ids=TPU_IDS)
def test_tpu_step_has_no_param_sized_temporary(compiled_step, optimizer,
                                               dtype, rounding, topology):
  record = _tpu_record(optimizer, topology, dtype, rounding)
  # Smaller than the smallest leaf as a chip holds it (a vector of 256):
  # no buffer shaped like a param fits.
  assert record["temp_bytes"] < 256 * jnp.dtype(dtype).itemsize, record


@pytest.mark.parametrize("topology", TPU_TOPOLOGIES)
@pytest.mark.parametrize("dtype, rounding", TPU_CASES, ids=CASE_IDS)
@pytest.mark.parametrize("optimizer", TPU_OPTIMIZERS, ids=TPU_IDS)
def test_tpu_step_reads_and_writes_each_buffer_once(compiled_step, optimizer,
                                                    dtype, rounding, topology):
  record = _tpu_record(optimizer, topology, dtype, rounding)
  leaves = record["leaves"]
  handoffs = VMEM_HANDOFFS.get((optimizer.name, topology, dtype), 0)
  second = SECOND_READS.get(optimizer.name, 0)
  assert record["reads"] == (
      record["expected_reads"] + handoffs + second * leaves), record
  assert record["writes"] == record["expected_writes"] + handoffs, record
  # One kernel per leaf at most (XLA:TPU may update several in one), and
  # one reduction kernel per leaf more for a second pass.
  assert record["kernels"] <= leaves * (1 + bool(second)) + handoffs, record
  assert not record["unsized"], record
  # The HBM traffic is the floor's, up to the scalars' few bytes, and at
  # most the second pass's reads more.
  assert record["program_bytes"] <= (
      record["floor_bytes"] + second * record["param_bytes"] + 1024), record


@pytest.mark.parametrize("dtype, rounding", TPU_CASES, ids=CASE_IDS)
@pytest.mark.parametrize("optimizer", TPU_OPTIMIZERS, ids=TPU_IDS)
def test_tpu_fsdp_step_has_no_collective_but_scalar_reductions(
    compiled_step, optimizer, dtype, rounding):
  record = _tpu_record(optimizer, "2x2 FSDP", dtype, rounding)
  collectives = record["collectives"]
  scalars = [c for c in collectives
             if c["op"].startswith("all-reduce")
             and all(shape.endswith("[]") for shape in c["shape"])]
  assert scalars == collectives, collectives
  summed = sum(len(c["shape"]) for c in scalars)
  assert summed == SCALAR_ALL_REDUCES.get(optimizer.name, 0), collectives


def test_tpu_checks_see_a_second_pass_and_a_reduction(compiled_step):
  # The measure itself: clipping by the global norm reads the gradients in
  # a reduction before Adam's kernels read them again, and on the slice
  # sums the norm over the chips.
  transform = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
  for chips in (1, 4):
    compiled, args = compiled_step.compile_step(transform, jnp.float32, chips)
    record = compiled_step.analyse(compiled, args)
    assert record["reads"] > record["expected_reads"], record
    assert record["program_bytes"] > 1.05 * record["floor_bytes"], record
    assert [c["op"] for c in record["collectives"]] == (
        ["all-reduce"] if chips > 1 else []), record
