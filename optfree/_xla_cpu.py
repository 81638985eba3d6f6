"""Rewrites that only XLA:CPU needs, applied only when lowering for CPU.

XLA:CPU emits one loop per output of an elementwise computation and stores a
subexpression shared by two outputs in a param-sized temporary; XLA:TPU and
XLA:GPU fuse each leaf's update into one multi-output kernel and need none of
this (benchmarks/compiled_step.py reads the TPU program). Each rewrite here
is dispatched on the lowering platform with ``jax.lax.platform_dependent``
(not ``jax.default_backend()``, which is the CPU while compiling for TPU ahead
of time): every other platform gets the plain math. Each changes no value on
CPU.

Each rewrite keeps the CPU measurement that justified it (remeasurements: on
a shared 2-core machine, the same step with ``lax.platform_dependent`` taking
its default branch, the plain math, timed in one interleaved run with
benchmarks/step_time.py's timing loop at 1M and 4M params, 1 and 64 leaves,
float32 and bfloat16, in three runs):

* :func:`unshared` (Schedule-Free AdamW/RAdam): without it XLA:CPU stores
  the normalized direction in a param-sized temporary, read by the y and z
  loops (tests/test_step_memory.py pins that there is none). Introduced in
  7e8fa26, measured with ``python benchmarks/step_time.py --sizes 8M
  --leaves 64 --dtypes float32``: SF-AdamW's speed against
  ``optax.contrib.schedule_free_adamw`` went from 1.05x to 1.83x,
  param-sized temporaries from 1 to 0.
* :func:`with_scalar_operand` (AMSBound's running maximum): XLA:CPU emits an
  elementwise loop with no scalar operand with a slower emitter. Introduced
  in e329d0d: AMSBound was 0.75x ``optax.amsgrad`` at 1M float32 params
  without it (the bare loop 2-3x slower while its buffers sit in cache).
  Remeasured with jax 0.10.2: the bare loop ``jnp.maximum(a, b)`` alone,
  jitted and donated, against the same loop with the scalar, 1.26x, 1.56x,
  1.33x and 1.07x the time at 64K, 256K, 1M and 4M float32 elements
  (minimum of 30 interleaved repetitions); AMSBound's whole step 1.19x
  faster with it at 1M params (median of 12; 0.94-1.60x) and 1.04x at 4M
  (0.88-1.36x), against 1.06x (0.51-1.41x) between two identical programs
  (the noise).

Not here, since they are no CPU-only rewrites: AdaBound's L2 term computed in
float32 (``adabound._add_decayed_weights_widened``, d55dafc), which changes
bfloat16 and float16 values (the sum is not rounded before the moments), so
it is the plain math on every platform (on XLA:CPU it also spares a
param-sized temporary: bfloat16 steps 1.23x faster, median of 12;
1.02-1.35x); and Lion's interpolation from the new momentum
(``lion._interpolation``), which the TPU program needs as much as the CPU one.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def _unshared_on_cpu(dependency: jax.Array, *values: jax.Array) -> tuple:
  int_type = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[
      dependency.dtype.itemsize]
  bits = jax.lax.bitcast_convert_type(dependency, int_type)
  width = jnp.asarray(bits.dtype.itemsize * 8 - 1, bits.dtype)
  zero = jax.lax.shift_right_logical(
      jax.lax.shift_right_logical(bits, width), jnp.asarray(1, bits.dtype))
  return tuple(value + zero.astype(value.dtype) for value in values)


def unshared(dependency: jax.Array, *values: jax.Array) -> tuple:
  """``values`` unchanged; on CPU made to depend elementwise on ``dependency``.

  On CPU adds an exact 0 computed from ``dependency``'s bits (the sign bit
  shifted out twice), an elementwise op XLA does not fold. An expression of
  the returned values then differs from the same expression of ``values``,
  so common-subexpression elimination cannot merge the two, and XLA:CPU
  computes each inside its own loop instead of storing the shared part in a
  param-sized temporary.
  """
  return jax.lax.platform_dependent(
      dependency, *values, cpu=_unshared_on_cpu,
      default=lambda _, *plain: tuple(plain))


def _with_scalar_operand_on_cpu(value: jax.Array) -> jax.Array:
  return value * jax.lax.optimization_barrier(jnp.ones((), value.dtype))


def with_scalar_operand(value: jax.Array) -> jax.Array:
  """``value``; on CPU multiplied by an exact 1 that XLA cannot fold away.

  XLA:CPU compiles an elementwise loop with no scalar operand (AMSBound's
  bare maximum of two buffers) with a slower emitter than a loop with one;
  multiplying by 1 changes no value and gives the loop its scalar operand.
  """
  return jax.lax.platform_dependent(
      value, cpu=_with_scalar_operand_on_cpu, default=lambda plain: plain)
