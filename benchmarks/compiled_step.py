"""The compiled TPU v5e step of every optimizer: kernels, temporaries, traffic.

Nothing runs: each optimizer's donated step ``params, state = step(params,
state, grads)`` is compiled ahead of time for TPU v5e on this machine, from a
topology description that libtpu provides without a TPU (``jax[tpu]`` must be
installed; see "Install" below), and the compiled program is read. Each
optfree optimizer (the table in tests/optimizer_table.py, and ScheduleFree+
while the table lacks it: its update also gets the loss, ``value=``, a
replicated float32 scalar) and each optax counterpart is compiled on one
chip and on a 2x2 slice (4 chips) with FSDP-sharded params and state (each
leaf's largest axis split over the 4 chips, state leaves shaped like params
sharded alike, scalars replicated), in float32, in bfloat16 with nearest
rounding, and in bfloat16 with ``rounding="stochastic"`` (optax's:
``optfree.stochastic_rounding(opt)``). The params are a tree of 5 leaves,
4,065,792 params (``PARAM_SHAPES``).

Per case it reports, per chip:

- ``kernels``: the kernels (top-level fusions, or any other compute op) of
  the entry computation that read or write a param-sized buffer (a float
  array shaped like a leaf of the params, as a chip holds it), and how many
  such buffers they read and write in all (``reads``, ``writes``), against
  what the algorithm needs (``expected_reads``: params, grads and each
  param-sized state buffer; ``expected_writes``: params and each state
  buffer). One multi-output kernel per leaf that reads each buffer once and
  writes each once meets both.
- ``temp_bytes``: the program's scratch memory in HBM
  (``memory_analysis().temp_size_in_bytes``); a param-sized temporary is a
  buffer the algorithm does not need.
- ``collectives``: every all-reduce, all-gather, reduce-scatter,
  collective-permute and all-to-all in the module (in any computation), with
  its shape and bytes.
- ``floor_bytes``: read params, grads and the state once, write params and
  the state once (the state as the optimizer holds it, scalars included),
  and ``floor_us``: the time that takes at v5e's HBM bandwidth of 819 GB/s
  per chip ("HBM2 capacity and bandwidth: 16 GB, 819 GBps",
  https://cloud.google.com/tpu/docs/v5e). A prediction, not a measurement:
  nothing is timed.
- ``program_bytes``: the HBM traffic the compiled program implies
  (``hbm_read_bytes`` + ``hbm_write_bytes``), and its ratio to the floor.

How the traffic is read from the HLO. XLA's ``cost_analysis()["bytes
accessed"]`` is no measure of it on TPU: XLA:TPU's memory-space assignment
stages buffers through the on-chip vector memory (VMEM) with asynchronous
copies, and the cost analysis counts both the copy and the kernel's read of
the staged copy (it is reported too, as ``xla_bytes_accessed``). Instead,
each instruction of the compiled entry computation (``as_text()``) is sized
from the shapes it prints, whose layouts name the memory space (``S(1)`` is
VMEM; no ``S(n)`` is HBM):

- a kernel (a fusion or any other compute op) reads each distinct operand
  that lies in HBM and writes each of its outputs that lies in HBM;
- an asynchronous ``copy-start`` reads its operand if that is in HBM and
  writes its destination if that is in HBM (``copy-done`` moves nothing
  more); a ``slice-start`` reads the slice it copies out of HBM;
- parameters, constants, tuples, ``get-tuple-element``, ``bitcast``, the
  ``-done`` halves of asynchronous ops and the ``ConcatBitcast`` custom call
  (which views staged slices as one buffer) move no bytes.

Bytes are elements times the dtype's size; XLA:TPU pads arrays to tiles of
8x128 (16x128 for bfloat16), which the leaves here fill exactly. Control flow
(``while``, ``call``, ``conditional``) would hide traffic from this count, so
its presence is recorded (``unsized``); no optimizer here has any.

Install (a venv of its own; ``jax[tpu]`` pins the libtpu that matches jax)::

  version=$(python -c "import jax; print(jax.__version__)")  # the dev venv's
  python3 -m venv /tmp/venv-tpu
  /tmp/venv-tpu/bin/pip install "jax[tpu]==$version" optax chex
  /tmp/venv-tpu/bin/pip install --no-deps -e .

Usage::

  /tmp/venv-tpu/bin/python benchmarks/compiled_step.py   # 3 min of CPU
  /tmp/venv-tpu/bin/python benchmarks/compiled_step.py --quick   # 20-45 s
  python benchmarks/compiled_step.py --markdown   # the guide's table, from
                                                  # the committed JSON

Results go to ``benchmarks/results/compiled_step-tpu-v5e.json``
(``compiled_step-tpu-v5e-quick.json`` with ``--quick``, which compiles
``schedule_free_adamw``, ``lion`` and ``optax.adamw`` on the 2x2 slice only).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.metadata
import json
import math
import os
import re
import sys
import time
from typing import Any, Callable

# libtpu reads these when it starts; without them it looks for a TPU VM's
# metadata and logs errors. Set before jax can load libtpu.
os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-4")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
# libtpu takes a lock file (/tmp/libtpu_lockfile) so that one process owns
# a TPU; with no TPU to own, it would only make a second compiling process
# (a pytest-xdist worker, a second run) fail.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
sys.path.insert(0, os.path.join(_ROOT, "tests"))
import optfree  # noqa: E402  (the checkout's optfree, not an installed one)
from optimizer_table import OPTIMIZERS  # noqa: E402  (the tests' table)

RESULTS_DIR = os.path.join(_ROOT, "benchmarks", "results")
RESULTS_NAME = "compiled_step-tpu-v5e"

TOPOLOGY = "v5e:2x2"
# HBM bandwidth of one TPU v5e chip, https://cloud.google.com/tpu/docs/v5e
# ("HBM2 capacity and bandwidth: 16 GB, 819 GBps").
HBM_GBPS = 819

# A small model's params: 4,065,792 in 5 leaves. Every dimension a leaf is
# sharded on splits into 4 shards that fill TPU tiles (8x128 float32, 16x128
# bfloat16) exactly, so bytes counted from shapes are bytes stored.
PARAM_SHAPES = {
    "embed": (2048, 1024),
    "dense1": {"kernel": (1024, 1536), "bias": (1536,)},
    "dense2": {"kernel": (1536, 256)},
    "norm": (1024,),
}

# name -> chips in the mesh; the one-chip mesh is one device of the slice.
TOPOLOGIES = {"1 chip": 1, "2x2 FSDP": 4}
# (dtype, rounding) of params and state.
CASES = (("float32", "nearest"), ("bfloat16", "nearest"),
         ("bfloat16", "stochastic"))

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter",
               "collective-permute", "all-to-all")
# Instructions that move no bytes themselves (see the module docstring).
_NO_TRAFFIC = {"parameter", "constant", "tuple", "get-tuple-element",
               "bitcast", "after-all", "partition-id", "replica-id",
               "iota"}
_CONTROL_FLOW = {"while", "call", "conditional", "async-start"}
_ITEMSIZE = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2,
             "bf16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8,
             "f64": 8, "c64": 8, "c128": 16}
_FLOATS = {"f16", "bf16", "f32", "f64"}


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """An optimizer to compile.

  Attributes:
    name: as reported.
    library: ``"optfree"`` or ``"optax"``.
    make: ``make(rounding)`` returns the transformation (optax's is wrapped
      in ``optfree.stochastic_rounding`` for ``"stochastic"``).
    needs_value: whether ``update`` takes the loss, ``value=`` (ScheduleFree+).
  """
  name: str
  library: str
  make: Callable[[str], optax.GradientTransformation]
  needs_value: bool = False


def needs_value(entry) -> bool:
  # The table flags an optimizer whose update takes the loss; ScheduleFree+
  # is the one known, by name in case the table has no flag yet.
  return bool(getattr(entry, "needs_value", False)
              or entry.name == "schedule_free_plus")


# ScheduleFree+ (whose update takes the loss), for as long as the tests'
# table does not list it: name and settings.
_NOT_IN_TABLE = (("schedule_free_plus", dict(weight_decay=1e-3)),)


def optfree_optimizers() -> list[Optimizer]:
  """The optimizers of tests/optimizer_table.py, with its small-run settings.

  And ScheduleFree+ where this optfree has it and the table does not.
  """
  optimizers = [Optimizer(entry.name, "optfree",
                          functools.partial(_make_optfree, entry),
                          needs_value(entry)) for entry in OPTIMIZERS]
  listed = {entry.name for entry in OPTIMIZERS}
  for name, kwargs in _NOT_IN_TABLE:
    if name not in listed and hasattr(optfree, name):
      optimizers.append(Optimizer(
          name, "optfree", functools.partial(_make_by_name, name, kwargs),
          needs_value=True))
  return optimizers


def _make_optfree(entry, rounding):
  return entry.make(rounding=rounding)


def _make_by_name(name, kwargs, rounding):
  return getattr(optfree, name)(**kwargs, rounding=rounding)


def _optax(factory: Callable[[], optax.GradientTransformation]
           ) -> Callable[[str], optax.GradientTransformation]:
  def make(rounding):
    if rounding == "stochastic":
      return optfree.stochastic_rounding(factory())
    return factory()
  return make


# The optax counterparts, with the hyperparameters of benchmarks/step_time.py
# (optax.sgd with momentum: a state buffer, as Schedule-Free SGD's z).
OPTAX = (
    Optimizer("optax.adamw", "optax",
              _optax(lambda: optax.adamw(1e-3, weight_decay=1e-4))),
    Optimizer("optax.adam", "optax", _optax(lambda: optax.adam(1e-3))),
    Optimizer("optax.sgd", "optax",
              _optax(lambda: optax.sgd(1e-3, momentum=0.9))),
    Optimizer("optax.lion", "optax",
              _optax(lambda: optax.lion(1e-4, weight_decay=1e-2))),
    Optimizer("optax.contrib.schedule_free_adamw", "optax",
              _optax(lambda: optax.contrib.schedule_free_adamw(
                  1e-3, weight_decay=1e-4))),
    Optimizer("optax.contrib.schedule_free_sgd", "optax",
              _optax(lambda: optax.contrib.schedule_free_sgd(
                  1e-3, weight_decay=1e-4))),
)

QUICK = ("schedule_free_adamw", "lion", "optax.adamw")


@functools.cache
def topology():
  """The TPU v5e 2x2 topology (needs libtpu; no TPU)."""
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  return topologies.get_topology_desc(platform="tpu", topology_name=TOPOLOGY)


def has_libtpu() -> bool:
  try:
    importlib.metadata.version("libtpu")
  except importlib.metadata.PackageNotFoundError:
    return False
  return True


def mesh(chips: int) -> Mesh:
  return Mesh(np.array(topology().devices[:chips]), ("fsdp",))


def leaf_spec(shape: tuple[int, ...], chips: int) -> PartitionSpec:
  """FSDP: the largest axis (the first of equals) split over the chips.

  A leaf whose largest axis does not split evenly, and a scalar, is
  replicated. The state's leaves shaped like params get the params' spec.
  """
  if not shape or chips == 1 or max(shape) % chips:
    return PartitionSpec()
  axis = int(np.argmax(shape))
  return PartitionSpec(*("fsdp" if i == axis else None
                         for i in range(len(shape))))


def _abstract(tree, the_mesh: Mesh):
  chips = the_mesh.devices.size
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(
          x.shape, x.dtype,
          sharding=NamedSharding(the_mesh, leaf_spec(x.shape, chips))), tree)


def params_like(dtype) -> Any:
  return jax.tree.map(lambda shape: jax.ShapeDtypeStruct(shape, dtype),
                      PARAM_SHAPES, is_leaf=lambda x: isinstance(x, tuple))


def compile_step(transform: optax.GradientTransformation, dtype, chips: int,
                 needs_value: bool = False):
  """The donated step compiled for ``chips`` TPU v5e chips.

  Returns:
    ``(compiled, args)``: the executable and the abstract, sharded
    arguments ``(params, state, grads[, value])`` it was compiled for.
  """
  the_mesh = mesh(chips)
  params = _abstract(params_like(dtype), the_mesh)
  state = _abstract(jax.eval_shape(transform.init, params), the_mesh)
  args = (params, state, params)
  if needs_value:
    args += (jax.ShapeDtypeStruct(
        (), jnp.float32, sharding=NamedSharding(the_mesh, PartitionSpec())),)

  def step(params, state, grads, *value):
    extra = dict(value=value[0]) if value else {}
    updates, state = transform.update(grads, state, params, **extra)
    return optax.apply_updates(params, updates), state

  # The outputs keep the inputs' shardings, as a training loop's would.
  shardings = jax.tree.map(lambda x: x.sharding, (params, state))
  compiled = jax.jit(step, donate_argnums=(0, 1),
                     out_shardings=shardings).lower(*args).compile()
  return compiled, args


# ---------------------------------------------------------------------------
# Reading the HLO.


@dataclasses.dataclass(frozen=True)
class Array:
  dtype: str
  dims: tuple[int, ...]
  memory_space: int  # 0: HBM; 1: VMEM; others: scalars' memories

  @property
  def bytes(self) -> int:
    return math.prod(self.dims) * _ITEMSIZE.get(self.dtype, 4)

  @property
  def in_hbm(self) -> bool:
    return self.memory_space == 0


@dataclasses.dataclass(frozen=True)
class Instruction:
  name: str
  opcode: str
  outputs: tuple[Array, ...]  # the arrays of its shape, tuples flattened
  operands: tuple[str, ...]  # distinct operand names, in order
  text: str


_ARRAY = re.compile(r"\b([a-z]+[0-9]*)\[([\d,]*)\](?:\{([^}]*)\})?")


def _arrays(shape_text: str) -> tuple[Array, ...]:
  arrays = []
  for dtype, dims, layout in _ARRAY.findall(shape_text):
    if dtype == "token":
      continue
    space = re.search(r"S\((\d+)\)", layout or "")
    arrays.append(Array(dtype, tuple(int(d) for d in dims.split(",") if d),
                        int(space.group(1)) if space else 0))
  return tuple(arrays)


def _closing(text: str, start: int) -> int:
  """The index of the parenthesis that closes the one at ``start``."""
  depth = 0
  for i in range(start, len(text)):
    depth += {"(": 1, ")": -1}.get(text[i], 0)
    if depth == 0:
      return i
  raise ValueError(f"unbalanced parentheses: {text[:200]}")


def parse_entry(hlo_text: str) -> list[Instruction]:
  """The instructions of the entry computation of an HLO module's text."""
  body = hlo_text.split("\nENTRY ", 1)[1]
  body = body[body.index("{\n") + 2:body.index("\n}")]
  instructions = []
  for line in body.splitlines():
    match = re.match(r"\s*(?:ROOT )?%([\w.-]+) = ", line)
    if not match:
      continue
    rest = line[match.end():]
    if rest.startswith("("):
      end = _closing(rest, 0) + 1
    else:
      end = rest.index(" ")
    shape_text, rest = rest[:end], rest[end + 1:]
    opcode = re.match(r"([\w-]+)\(", rest)
    if not opcode:
      continue
    close = _closing(rest, opcode.end() - 1)
    operands = re.findall(r"%([\w.-]+)", rest[opcode.end():close])
    instructions.append(Instruction(
        match.group(1), opcode.group(1), _arrays(shape_text),
        tuple(dict.fromkeys(operands)), line))
  return instructions


def _moves_nothing(inst: Instruction) -> bool:
  return (inst.opcode in _NO_TRAFFIC or inst.opcode.endswith("-done")
          or (inst.opcode == "custom-call"
              and 'custom_call_target="ConcatBitcast"' in inst.text))


def traffic(instructions: list[Instruction]) -> tuple[int, int]:
  """HBM bytes read and written by the entry computation (module docstring)."""
  shapes = {inst.name: inst.outputs for inst in instructions}
  read = written = 0
  for inst in instructions:
    if _moves_nothing(inst):
      continue
    if inst.opcode in ("copy-start", "slice-start"):
      # (destination, source, context) / ((source), destination, context)
      source = shapes[inst.operands[0]][0]
      destination = inst.outputs[0 if inst.opcode == "copy-start" else 1]
      read += destination.bytes if source.in_hbm else 0
      written += destination.bytes if destination.in_hbm else 0
      continue
    for name in inst.operands:
      read += sum(a.bytes for a in shapes.get(name, ()) if a.in_hbm)
    written += sum(a.bytes for a in inst.outputs if a.in_hbm)
  return read, written


def kernels(instructions: list[Instruction], param_dims: set
            ) -> tuple[int, int, int]:
  """Kernels touching a param-sized buffer; param-sized reads and writes.

  A param-sized buffer is a float array with the dims of a params leaf as
  one chip holds it, in HBM or staged in VMEM.
  """
  shapes = {inst.name: inst.outputs for inst in instructions}

  def is_param_sized(array):
    return array.dtype in _FLOATS and array.dims in param_dims

  count = reads = writes = 0
  for inst in instructions:
    if _moves_nothing(inst) or inst.opcode in ("copy-start", "slice-start"):
      continue
    read = sum(is_param_sized(a) for name in inst.operands
               for a in shapes.get(name, ()))
    write = sum(map(is_param_sized, inst.outputs))
    if read or write:
      count += 1
      reads += read
      writes += write
  return count, reads, writes


_COLLECTIVE = re.compile(r"\s*(?:ROOT )?%[\w.-]+ = (.*?) ((?:"
                         + "|".join(COLLECTIVES) + r")(?:-start)?)\(")


def collectives(hlo_text: str) -> list[dict]:
  """Every collective of the module, in any computation, with its size."""
  found = []
  for line in hlo_text.splitlines():
    match = _COLLECTIVE.match(line)
    if match:
      arrays = _arrays(match.group(1))
      found.append(dict(op=match.group(2),
                        shape=[f"{a.dtype}[{','.join(map(str, a.dims))}]"
                               for a in arrays],
                        bytes=sum(a.bytes for a in arrays)))
  return found


def _per_chip_bytes(tree) -> int:
  return sum(
      math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize
      for x in jax.tree.leaves(tree))


def analyse(compiled, args) -> dict:
  """The record of one compiled step (per chip; module docstring)."""
  params, state, grads, *extra = args
  text = compiled.as_text()
  instructions = parse_entry(text)
  param_leaves = jax.tree.leaves(params)
  param_dims = {tuple(x.sharding.shard_shape(x.shape)) for x in param_leaves}
  global_shapes = {x.shape for x in param_leaves}
  state_buffers = sum(x.shape in global_shapes and x.ndim > 0
                      for x in jax.tree.leaves(state))
  count, reads, writes = kernels(instructions, param_dims)
  read, written = traffic(instructions)
  floor = (2 * _per_chip_bytes(params) + _per_chip_bytes(grads)
           + 2 * _per_chip_bytes(state) + _per_chip_bytes(extra))
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0]
  return dict(
      leaves=len(param_leaves),
      param_bytes=_per_chip_bytes(params),
      state_buffers=state_buffers,
      kernels=count,
      reads=reads,
      writes=writes,
      expected_reads=2 * len(param_leaves) + state_buffers,
      expected_writes=len(param_leaves) + state_buffers,
      temp_bytes=int(compiled.memory_analysis().temp_size_in_bytes),
      collectives=collectives(text),
      floor_bytes=floor,
      floor_us=floor / (HBM_GBPS * 1e3),
      hbm_read_bytes=read,
      hbm_write_bytes=written,
      program_bytes=read + written,
      program_over_floor=(read + written) / floor,
      xla_bytes_accessed=float(cost.get("bytes accessed", float("nan"))),
      unsized=sorted({i.opcode for i in instructions
                      if i.opcode in _CONTROL_FLOW}),
  )


def run(optimizers, topologies, cases, progress=True) -> tuple[list, dict]:
  """Compiles and reads every (optimizer, topology, case); the records."""
  records, skipped = [], {}
  for opt in optimizers:
    for topo_name in topologies:
      for dtype, rounding in cases:
        try:
          transform = opt.make(rounding)
        except NotImplementedError as error:
          skipped[opt.name] = f"not implemented here: {error}"
          break
        start = time.perf_counter()
        compiled, args = compile_step(transform, jnp.dtype(dtype),
                                      TOPOLOGIES[topo_name], opt.needs_value)
        record = dict(optimizer=opt.name, library=opt.library,
                      topology=topo_name, chips=TOPOLOGIES[topo_name],
                      dtype=dtype, rounding=rounding, **analyse(compiled, args))
        record["compile_s"] = round(time.perf_counter() - start, 2)
        records.append(record)
        if progress:
          print(_row(record), file=sys.stderr, flush=True)
  return records, skipped


# ---------------------------------------------------------------------------
# Reporting.


def case_label(record) -> str:
  if record["dtype"] == "float32":
    return "f32"
  return "bf16-sr" if record["rounding"] == "stochastic" else "bf16"


def collective_label(record) -> str:
  """``"-"``, or e.g. ``"2 all-reduce (8 B)"``."""
  if not record["collectives"]:
    return "-"
  ops = {}
  for c in record["collectives"]:
    count, size = ops.get(c["op"], (0, 0))
    ops[c["op"]] = (count + 1, size + c["bytes"])
  return ", ".join(f"{n} {op} ({_bytes(size)})"
                   for op, (n, size) in ops.items())


def _bytes(n: float) -> str:
  if n < 1 << 10:
    return f"{n:.0f} B"
  if n < 1 << 20:
    return f"{n / (1 << 10):.1f} KiB"
  return f"{n / (1 << 20):.2f} MiB"


_HEADER = (f"{'optimizer':34s} {'topology':9s} {'case':7s} {'kernels':>7s} "
           f"{'reads':>7s} {'writes':>7s} {'temps':>9s} {'floor':>9s} "
           f"{'us':>6s} {'program':>9s} {'x':>5s}  collectives")


def _row(r) -> str:
  return (f"{r['optimizer']:34s} {r['topology']:9s} {case_label(r):7s} "
          f"{r['kernels']:7d} {r['reads']:3d}/{r['expected_reads']:<3d} "
          f"{r['writes']:3d}/{r['expected_writes']:<3d} "
          f"{_bytes(r['temp_bytes']):>9s} {_bytes(r['floor_bytes']):>9s} "
          f"{r['floor_us']:6.1f} {_bytes(r['program_bytes']):>9s} "
          f"{r['program_over_floor']:5.2f}  {collective_label(r)}")


def table(records) -> str:
  """Every record as text: reads/writes are found/needed, per chip."""
  return "\n".join([_HEADER] + [_row(r) for r in records])


def markdown(records) -> str:
  """The performance guide's table: one row per optimizer, over all cases.

  The floor's predicted time per topology (f32 · bf16 · bf16-sr), the
  largest ratio of the program's traffic to the floor (``1.00``: at the
  floor), the kernels per leaf, the largest temporary, and the collectives
  on the slice.
  """
  names = list(dict.fromkeys(r["optimizer"] for r in records))
  topologies = list(dict.fromkeys(r["topology"] for r in records))
  labels = list(dict.fromkeys(case_label(r) for r in records))
  by_key = {(r["optimizer"], r["topology"], case_label(r)): r for r in records}
  head = (["optimizer", "state buffers"]
          + [f"floor µs, {t} ({' · '.join(labels)})" for t in topologies]
          + ["traffic / floor", "kernels / leaves", "temps",
             "collectives (2x2)"])
  lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
  for name in names:
    rows = [r for r in records if r["optimizer"] == name]
    cells = [f"`{name}`",
             "/".join(sorted({str(r["state_buffers"] // r["leaves"])
                              for r in rows}))]
    for topo_name in topologies:
      cells.append(" · ".join(
          f"{by_key[(name, topo_name, label)]['floor_us']:.0f}"
          if (name, topo_name, label) in by_key else "-" for label in labels))
    cells.append(f"{max(r['program_over_floor'] for r in rows):.2f}")
    cells.append(", ".join(sorted({f"{r['kernels']}/{r['leaves']}"
                                   for r in rows})))
    cells.append(_bytes(max(r["temp_bytes"] for r in rows)))
    sliced = [r for r in rows if r["chips"] > 1]
    cells.append("; ".join(sorted({
        collective_label(r) if r["collectives"] else "none" for r in sliced})))
    lines.append("| " + " | ".join(cells) + " |")
  staging = [r["xla_bytes_accessed"] / r["program_bytes"] for r in records]
  lines += ["", f"XLA's `bytes accessed` over the traffic read from the HLO: "
            f"{min(staging):.2f}-{max(staging):.2f}x."]
  return "\n".join(lines)


def results_path(out: str, quick: bool) -> str:
  return os.path.join(out, RESULTS_NAME + ("-quick" if quick else "")
                      + ".json")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help=f"only {', '.join(QUICK)}, on the 2x2 slice "
                           "(20-45 s); writes compiled_step-tpu-v5e-quick.json")
  parser.add_argument("--only", nargs="+",
                      help="compile only these optimizers (names as printed)")
  parser.add_argument("--topologies", nargs="+", choices=list(TOPOLOGIES),
                      help="default: both")
  parser.add_argument("--out", default=RESULTS_DIR,
                      help="folder for compiled_step-tpu-v5e.json")
  parser.add_argument("--markdown", action="store_true",
                      help="print the guide's table from the JSON in --out "
                           "and exit (needs no libtpu)")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)

  if args.markdown:
    with open(results_path(args.out, args.quick)) as f:
      print(markdown(json.load(f)["records"]))
    return 0
  if not has_libtpu():
    print("compiled_step.py compiles for TPU and needs libtpu: install "
          f"'jax[tpu]=={jax.__version__}' in a venv of its own (see the "
          "module docstring)", file=sys.stderr)
    return 2

  optimizers = optfree_optimizers() + list(OPTAX)
  only = args.only or (QUICK if args.quick else None)
  if only:
    unknown = set(only) - {opt.name for opt in optimizers}
    if unknown:
      parser.error(f"unknown optimizers {sorted(unknown)}")
    optimizers = [opt for opt in optimizers if opt.name in only]
  topologies = args.topologies or (["2x2 FSDP"] if args.quick
                                   else list(TOPOLOGIES))
  start = time.perf_counter()
  if not args.no_progress:
    print(_HEADER, file=sys.stderr)
  records, skipped = run(optimizers, topologies, CASES,
                         progress=not args.no_progress)
  print(table(records))
  print(f"\nper chip; reads/writes: param-sized buffers found/needed; floor: "
        f"read params, grads, state once, write params, state once; us: the "
        f"floor at {HBM_GBPS} GB/s (a prediction); x: program traffic / "
        "floor")
  for name, reason in skipped.items():
    print(f"skipped {name}: {reason}")

  topo = topology()
  meta = dict(
      topology=TOPOLOGY, device_kind=topo.devices[0].device_kind,
      hbm_gbps=HBM_GBPS,
      hbm_source="https://cloud.google.com/tpu/docs/v5e",
      params=sum(math.prod(x.shape)
                 for x in jax.tree.leaves(params_like(jnp.float32))),
      param_shapes={jax.tree_util.keystr(path): list(x.shape) for path, x in
                    jax.tree_util.tree_leaves_with_path(
                        params_like(jnp.float32))},
      jax=jax.__version__, jaxlib=importlib.metadata.version("jaxlib"),
      libtpu=importlib.metadata.version("libtpu"), optax=optax.__version__,
      optfree=optfree.__version__,
      seconds=round(time.perf_counter() - start, 1),
      date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
      command=" ".join(["python", "benchmarks/compiled_step.py"]
                       + list(argv if argv is not None else sys.argv[1:])),
  )
  os.makedirs(args.out, exist_ok=True)
  path = results_path(args.out, args.quick)
  with open(path, "w") as f:
    json.dump(dict(meta=meta, skipped=skipped, records=records), f, indent=1)
  print(f"wrote {path} in {meta['seconds']} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
