"""Rewrites that only XLA:CPU needs, applied only when lowering for CPU.

XLA:CPU emits one loop per output of an elementwise computation and stores a
subexpression shared by two outputs in a param-sized temporary; XLA:TPU and
XLA:GPU fuse each leaf's update into one multi-output kernel and need none of
this (benchmarks/compiled_step.py reads the TPU program). Each rewrite here
changes no value on CPU and is dispatched on the lowering platform with
``jax.lax.platform_dependent`` (not ``jax.default_backend()``, which is the
CPU while compiling for TPU ahead of time): every other platform gets the
plain math.

Each rewrite keeps the CPU measurement that justified it:

* :func:`unshared` (Schedule-Free AdamW/RAdam): without it XLA:CPU stores
  the normalized direction in a param-sized temporary, read by the y and z
  loops (tests/test_step_memory.py pins that there is none). Introduced in
  7e8fa26, measured with ``python benchmarks/step_time.py --sizes 8M
  --leaves 64 --dtypes float32``: SF-AdamW's speed against
  ``optax.contrib.schedule_free_adamw`` went from 1.05x to 1.83x,
  param-sized temporaries from 1 to 0.
"""

from __future__ import annotations

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
