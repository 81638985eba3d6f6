r"""Stochastic rounding of low-precision writes, shared by every optimizer.

Rounding a float32 value :math:`v` to the nearest bfloat16 drops every change
smaller than half a unit in the last place (:math:`2^{-9}` relative): a param
whose update is that small never moves. Stochastic rounding instead rounds
:math:`v` to its upper neighbour :math:`\lceil v \rceil` with probability
:math:`(v - \lfloor v \rfloor) / (\lceil v \rceil - \lfloor v \rfloor)` and to
its lower neighbour otherwise, so that every write is unbiased,

.. math::

  \mathbb{E}[\operatorname{sr}(v)] = v,

and small updates accumulate in expectation (Gupta et al., 2015). The rounding
is exact integer arithmetic on the float32 bit pattern: add as many uniformly
random bits as the narrow format drops, and clear those bits. For bfloat16,
whose bit pattern is the upper half of the float32 one, that is 16 bits
everywhere (:func:`round_to_bfloat16`). float16 keeps 10 of float32's 23
fraction bits but has a narrower exponent: it drops 13 bits where it is
normal, up to 23 among its subnormals (a fixed step of :math:`2^{-24}` below
:math:`2^{-14}`), and below :math:`2^{-24}` it rounds to 0 or
:math:`2^{-24}` by comparing 32 random bits with the value
(:func:`round_to_float16`). Either way the probability is exact, as a function
of the random bits, except float16's for values below :math:`2^{-33}` (bias
toward zero under :math:`2^{-56}`).

The random bits need no key from the user: they are a counter-based hash of
(``seed``, the step count kept in the optimizer state, the leaf's index in the
params tree, which buffer is written, the element's index in the leaf). So a
run is deterministic, a run resumed from a checkpoint is bit-identical to one
that never stopped, and every replica of a replicated param (``pmap``, sharded
``jit``) draws the same bits: the element index is the global one, never a
device's.

Only bfloat16 and float16 writes are rounded stochastically. float32 and
float64 leaves are written as with nearest rounding; other floats narrower
than float32 (the float8 formats) are rejected with a ``ValueError`` when the
optimizer is initialised.

Every optfree optimizer takes ``rounding="stochastic"`` and ``seed``;
:func:`stochastic_rounding` gives the same to any optax optimizer.
"""

from __future__ import annotations

import typing
from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optfree import _checks
from optfree import _public
from optfree import _tree

# How an optimizer writes bfloat16 and float16 buffers: rounded to nearest
# (the reference's numbers) or stochastically.
Rounding = Literal["nearest", "stochastic"]
ROUNDINGS: tuple[str, ...] = typing.get_args(Rounding)

# The buffer written, folded into the bits so that two writes of one leaf in
# one step (y and z, m and v) get independent noise.
PARAMS, Z, NU, MU = range(4)
_NUM_STREAMS = 4

_SEED_LIMIT = 2**32


def check_rounding(rounding: Any, seed: Any) -> None:
  """Raises ValueError unless ``rounding`` and ``seed`` are valid.

  Args:
    rounding: ``"nearest"`` or ``"stochastic"``.
    seed: an integer in [0, 2**32).
  """
  _checks.check_choice("rounding", rounding, ROUNDINGS)
  _checks.check_int("seed", seed)
  # A seed injected by optax.inject_hyperparams is traced: checked at
  # construction already.
  if not isinstance(seed, jax.core.Tracer) and int(seed) >= _SEED_LIMIT:
    raise ValueError(f"seed must be an integer < 2**32, got {seed!r}")


def check_dtypes(name: str, rounding: str, *trees_or_dtypes: Any) -> None:
  """Raises ValueError if stochastic rounding would write a float it cannot.

  bfloat16 and float16 writes are rounded stochastically, float32 and wider
  ones as with nearest rounding; any other float narrower than float32 (the
  float8 formats) would be rounded to nearest silently, so it is refused.

  Args:
    name: the optimizer's name, used in the message.
    rounding: ``"nearest"`` (nothing is checked) or ``"stochastic"``.
    *trees_or_dtypes: params trees and dtype options (``None`` is skipped).
  """
  if rounding != "stochastic":
    return
  for item in trees_or_dtypes:
    if item is None:
      continue
    if isinstance(item, (str, type, np.dtype)):
      dtypes = [jnp.dtype(item)]
    else:
      dtypes = [jnp.asarray(leaf).dtype for leaf in jax.tree.leaves(item)]
    for dtype in dtypes:
      if (jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4
          and dtype not in _IN_FLOAT32):
        raise ValueError(
            f"{name}: rounding='stochastic' rounds bfloat16 and float16 "
            f"writes (and leaves float32/float64 as they are), not {dtype}; "
            "use bfloat16 or float16, or rounding='nearest'."
        )


def _fmix32(x: jax.Array) -> jax.Array:
  # MurmurHash3's finalizer: a bijection of uint32 whose every output bit
  # depends on every input bit (avalanche).
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def _key(seed: int, count: jax.Array, leaf: int, stream: int) -> jax.Array:
  """A well-mixed uint32 key per (seed, step, leaf, buffer); scalar work."""
  key = _fmix32(jnp.asarray(seed).astype(jnp.uint32) ^ jnp.uint32(0x3C6EF372))
  key = _fmix32(key ^ jnp.asarray(count).astype(jnp.uint32))
  return _fmix32(key + jnp.uint32((leaf * _NUM_STREAMS + stream) % 2**32))


def _element_index(shape: tuple[int, ...]) -> jax.Array:
  # Built from one iota per axis rather than by reshaping an arange, so that
  # each shard of a sharded leaf computes its own global indices locally.
  index = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(len(shape))):
    iota = jax.lax.broadcasted_iota(jnp.uint32, shape, axis)
    index = index + iota * jnp.uint32(stride % 2**32)
    stride *= shape[axis]
  return index


def random_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Uniform uint32 bits for each element: a hash of (key, element index).

  The element index is spread over the uint32 range by the golden ratio (a
  Weyl sequence), offset by ``key``, and mixed by MurmurHash3's finalizer:
  three multiplications and three xor-shifts per element, against many
  times more work for ``jax.random.bits``' threefry on CPU (see
  benchmarks/low_precision.py). The finalizer alone, on consecutive indices,
  gives measurably non-uniform top bits (a chi-square of 333 for 255 degrees
  of freedom over 1M elements); after the Weyl step it is 249. For a fixed
  element, a uniformly random key gives uniform bits (both steps are
  bijections). Indices wrap modulo 2**32 (leaves of 4G elements and more
  repeat their bits).

  Args:
    key: a uint32 scalar, e.g. from the seed, step, leaf and buffer.
    shape: the shape of the leaf.

  Returns:
    A uint32 array of ``shape``.
  """
  return _fmix32(_element_index(shape) * jnp.uint32(0x9E3779B9) + key)


def _draw(seed: int, count: jax.Array, leaf: int, stream: int,
          shape: tuple[int, ...]) -> jax.Array:
  """The random bits of buffer ``stream`` of leaf ``leaf`` at step ``count``."""
  return random_bits(_key(seed, count, leaf, stream), shape)


def round_to_bfloat16(value: jax.Array, bits: jax.Array) -> jax.Array:
  r"""Rounds float32 ``value`` to bfloat16 stochastically, given random bits.

  With :math:`b` the float32 bit pattern of :math:`|v|` and :math:`u` the top
  16 of ``bits`` (uniform on :math:`[0, 2^{16})`), the result has magnitude
  bits :math:`\lfloor (b + u) / 2^{16} \rfloor 2^{16}`: it is
  :math:`\lceil |v| \rceil` exactly when :math:`u` reaches past the dropped
  fraction, i.e. with probability :math:`(|v| - \lfloor |v| \rfloor) /
  (\lceil |v| \rceil - \lfloor |v| \rfloor)`, and :math:`|v|` itself when it
  is a bfloat16. Adding to the magnitude rounds negative values the same way.
  The sign is kept (so is the sign of zero); NaN and infinities pass
  through; a finite value rounds to infinity only where nearest rounding does
  (beyond the largest bfloat16 by half an ulp or more): below that it rounds
  to the largest finite bfloat16 at most.

  Args:
    value: a float32 array (wider or narrower floats are converted first).
    bits: uint32 random bits of ``value``'s shape.

  Returns:
    A bfloat16 array of ``value``'s shape.

  Example:
    >>> import jax.numpy as jnp
    >>> from optfree import rounding
    >>> value = jnp.full(4, 1 + 2.0**-9)  # a quarter ulp above 1.0
    >>> bits = jnp.array([0, 2**30, 3 * 2**30 - 1, 3 * 2**30], jnp.uint32)
    >>> print(rounding.round_to_bfloat16(value, bits).astype(float).tolist())
    [1.0, 1.0, 1.0, 1.0078125]
  """
  return _bfloat16_in_float32(value, bits).astype(jnp.bfloat16)


def round_to_float16(value: jax.Array, bits: jax.Array) -> jax.Array:
  r"""Rounds float32 ``value`` to float16 stochastically, given random bits.

  float16's last place is :math:`2^{e - 10}` for :math:`|v|` in a normal
  binade :math:`[2^e, 2^{e+1})`, :math:`e \ge -14`, and :math:`2^{-24}` below
  :math:`2^{-14}` (its subnormals). So the float32 pattern :math:`b` of
  :math:`|v|` drops :math:`d = 13` bits where float16 is normal and
  :math:`d = -1 - e` bits (14 to 23) in its subnormal binades,
  :math:`-24 \le e < -14`; with :math:`u` the top :math:`d` of ``bits``,
  the result has magnitude bits :math:`\lfloor (b + u) / 2^d \rfloor 2^d`,
  which is :math:`\lceil |v| \rceil` with probability exactly
  :math:`(|v| - \lfloor |v| \rfloor) / (\lceil |v| \rceil - \lfloor |v|
  \rfloor)`, as :func:`round_to_bfloat16` (:math:`d = 16`). Below
  :math:`2^{-24}` the neighbours are 0 and :math:`2^{-24}`: the result is
  :math:`2^{-24}` when the 32 ``bits`` reach :math:`2^{32} - \lfloor |v|
  2^{56} \rfloor`, with probability :math:`|v| / 2^{-24}` exactly for
  :math:`|v| \ge 2^{-33}` (a multiple of :math:`2^{-56}`) and less by under
  :math:`2^{-32}` below: a bias toward zero smaller than :math:`2^{-56}`.

  float16 values are returned unchanged by every draw; the sign is kept (so
  is the sign of zero); NaN and infinities pass through; a finite value
  rounds to infinity only where nearest rounding does (from 65520 on): below
  that it rounds to 65504, the largest finite float16, at most.

  Args:
    value: a float32 array (wider or narrower floats are converted first).
    bits: uint32 random bits of ``value``'s shape.

  Returns:
    A float16 array of ``value``'s shape.

  Example:
    >>> import jax.numpy as jnp
    >>> from optfree import rounding
    >>> value = jnp.full(4, 1 + 2.0**-12)  # a quarter ulp above 1.0
    >>> bits = jnp.array([0, 2**30, 3 * 2**30 - 1, 3 * 2**30], jnp.uint32)
    >>> print(rounding.round_to_float16(value, bits).astype(float).tolist())
    [1.0, 1.0, 1.0, 1.0009765625]
    >>> value = jnp.full(4, 2.0**-26)  # a quarter of the smallest float16
    >>> rounded = rounding.round_to_float16(value, bits).astype(float)
    >>> print((rounded * 2**24).tolist())  # in units of 2**-24
    [0.0, 0.0, 0.0, 1.0]
  """
  return _float16_in_float32(value, bits).astype(jnp.float16)


def _bfloat16_in_float32(value: jax.Array, bits: jax.Array) -> jax.Array:
  """:func:`round_to_bfloat16`'s value, held in a float32 (exactly).

  Above the largest finite bfloat16, and for Inf and NaN, it is ``value``
  itself, which a conversion to bfloat16 then rounds to nearest.
  """
  value = jnp.asarray(value, jnp.float32)
  pattern = jax.lax.bitcast_convert_type(value, jnp.uint32)
  # Adding u to the whole pattern adds it to the magnitude (the sum stays
  # below the sign bit for every finite value handled here); clearing the
  # lower 16 bits then leaves a bfloat16 held in a float32. (Converting that
  # to bfloat16, rather than bitcasting its upper half, also keeps XLA from
  # recomputing all this, random bits included, in every loop that reads
  # the written buffer.)
  rounded = jax.lax.bitcast_convert_type(
      (pattern + (bits >> 16)) & jnp.uint32(0xFFFF0000), jnp.float32)
  # Above the largest finite bfloat16 (0x7F7F), where rounding up would give
  # Inf, and for Inf and NaN: nearest rounding, which gives 0x7F7F below
  # 0x7F7F8000, Inf from there on, and NaN for NaN.
  magnitude = pattern & jnp.uint32(0x7FFFFFFF)
  return jnp.where(magnitude > jnp.uint32(0x7F7F0000), value, rounded)


# float16's landmarks as float32 bit patterns and biased float32 exponents.
_FLOAT16_MAX = 0x477FE000  # 65504, the largest finite float16
_FLOAT16_MIN_NORMAL_EXPONENT = 113  # 2**-14
_FLOAT16_TINY = 0x33800000  # 2**-24, the smallest float16 subnormal
_FLOAT16_TINY_EXPONENT = _FLOAT16_TINY >> 23  # 103


def _float16_in_float32(value: jax.Array, bits: jax.Array) -> jax.Array:
  """:func:`round_to_float16`'s value, held in a float32 (exactly).

  Above the largest finite float16, and for Inf and NaN, it is ``value``
  itself, which a conversion to float16 then rounds to nearest.
  """
  value = jnp.asarray(value, jnp.float32)
  pattern = jax.lax.bitcast_convert_type(value, jnp.uint32)
  magnitude = pattern & jnp.uint32(0x7FFFFFFF)
  exponent = magnitude >> 23
  # float16's last place is 2**(e - 10) for a normal exponent e >= -14 and
  # 2**-24 below: the float32 pattern drops 13 bits from 2**-14 up, one more
  # per binade below, 23 (the whole fraction) in [2**-24, 2**-23).
  dropped = jnp.uint32(_FLOAT16_MIN_NORMAL_EXPONENT + 13) - jnp.clip(
      exponent, jnp.uint32(_FLOAT16_TINY_EXPONENT),
      jnp.uint32(_FLOAT16_MIN_NORMAL_EXPONENT))
  # As for bfloat16: the top ``dropped`` random bits added to the magnitude
  # carry into the kept bits with probability (dropped fraction) / 2**dropped;
  # a carry out of the fraction is the next binade, exactly as wanted.
  rounded = (pattern + (bits >> (jnp.uint32(32) - dropped))) & (
      jnp.uint32(0xFFFFFFFF) << dropped)
  # Below 2**-24 (and for float32 subnormals and zero) the neighbours are 0
  # and 2**-24: up with probability |v| / 2**-24 = T / 2**32, T = |v| 2**56
  # (exact in float32; floored to an integer, which it is from |v| >= 2**-33
  # on). Up when bits >= 2**32 - T, i.e. ~bits < T: as above, the larger the
  # bits, the sooner a value rounds up.
  # (Capped below 2**-24, so that no lane converts an out-of-range float.)
  below_tiny = jnp.minimum(magnitude, jnp.uint32(_FLOAT16_TINY - 1))
  threshold = (jax.lax.bitcast_convert_type(below_tiny, jnp.float32)
               * jnp.float32(2.0**56)).astype(jnp.uint32)
  tiny = jnp.where(~bits < threshold, jnp.uint32(_FLOAT16_TINY),
                   jnp.uint32(0)) | (pattern & jnp.uint32(0x80000000))
  rounded = jnp.where(exponent < jnp.uint32(_FLOAT16_TINY_EXPONENT), tiny,
                      rounded)
  # Above 65504, where rounding up would give Inf, and for Inf and NaN:
  # nearest rounding, which gives 65504 below 65520, Inf from there on, and
  # NaN for NaN.
  return jnp.where(magnitude > jnp.uint32(_FLOAT16_MAX), value,
                   jax.lax.bitcast_convert_type(rounded, jnp.float32))


# The dtypes rounded stochastically, and their rounding held in a float32.
_IN_FLOAT32 = {
    jnp.dtype(jnp.bfloat16): _bfloat16_in_float32,
    jnp.dtype(jnp.float16): _float16_in_float32,
}


def write(
    rounding: str,
    seed: int,
    count: jax.Array,
) -> Callable[[jax.Array, Any, int, int], jax.Array]:
  """The function an optimizer writes a buffer leaf with.

  Args:
    rounding: ``"nearest"`` or ``"stochastic"``.
    seed: the optimizer's seed.
    count: the step count in the optimizer state (before this update).

  Returns:
    ``write(value, dtype, leaf, stream)``: ``value.astype(dtype)``, rounded
    stochastically when ``rounding="stochastic"`` and ``dtype`` is bfloat16
    or float16, with bits drawn for leaf number ``leaf`` of the tree and buffer
    ``stream`` (one of ``PARAMS, Z, NU, MU``).
  """

  def write_fn(value, dtype, leaf, stream):
    in_float32 = _IN_FLOAT32.get(jnp.dtype(dtype))
    if rounding == "nearest" or in_float32 is None:
      return value.astype(dtype)
    return in_float32(value, _draw(seed, count, leaf, stream,
                                   jnp.shape(value))).astype(dtype)

  return write_fn


def params_update(
    rounding: str,
    seed: int,
    count: jax.Array,
) -> Callable[[jax.Array, jax.Array, int], jax.Array]:
  r"""The function an optimizer turns its float32 step into an update with.

  With nearest rounding, the step :math:`s` is returned in the params' dtype,
  as before. With stochastic rounding and a bfloat16 or float16 param
  :math:`y`, the new param :math:`t = \operatorname{sr}(y + s)` is rounded
  here and the update is :math:`t - y` in float32, so that
  ``optax.apply_updates`` (which adds in float32 and rounds to the params'
  dtype) lands on :math:`t` bit for bit: :math:`t - y` is exact in float32
  whenever the exponents of :math:`t` and :math:`y` differ by less than 16
  for bfloat16 (8 significant bits; a change smaller than a factor
  :math:`2^{15}`) or less than 14 for float16 (11 significant bits, a
  subnormal counting as exponent -14; a change smaller than a factor
  :math:`2^{13}`), and so is then the sum. An update in the params' dtype
  could not: :math:`t - y` needs more bits than the dtype has whenever a
  param crosses zero or halves. Beyond the largest finite value of the dtype
  (and for Inf and NaN) the update is :math:`(y + s) - y`, which
  ``apply_updates`` rounds to nearest (Inf from half an ulp past it).

  Args:
    rounding: ``"nearest"`` or ``"stochastic"``.
    seed: the optimizer's seed.
    count: the step count in the optimizer state (before this update).

  Returns:
    ``update(step, params, leaf)`` for the param leaf number ``leaf``.
  """
  def update_fn(step, params, leaf):
    dtype = jnp.asarray(params).dtype
    in_float32 = _IN_FLOAT32.get(dtype)
    if rounding == "nearest" or in_float32 is None:
      return step.astype(dtype)
    params = params.astype(jnp.float32)
    bits = _draw(seed, count, leaf, PARAMS, jnp.shape(params))
    # The target held in float32: its conversion to the params' dtype and
    # back would be exact, and is left to apply_updates.
    return in_float32(params + step.astype(jnp.float32), bits) - params

  return update_fn


class StochasticRoundingState(NamedTuple):
  """State of :func:`stochastic_rounding`.

  Attributes:
    count: number of updates applied (int32, saturating), which the random
      bits are drawn from.
    inner_state: the wrapped optimizer's state (float32 where it was
      initialised from bfloat16 or float16 params, unless it has its own
      dtype option).
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax
  inner_state: optax.OptState


def stochastic_rounding(
    inner: optax.GradientTransformation,
    *,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Runs an optax optimizer in float32; rounds bf16/f16 params stochastically.

  The inner optimizer sees float32 copies of bfloat16 and float16 params and
  gradients (float32 and float64 leaves pass unchanged) and returns a float32
  step :math:`s`; the new param is its stochastic rounding,

  .. math::

    y_{k+1} = \operatorname{sr}(y_k + s_k), \qquad
    \mathbb{E}[y_{k+1}] = y_k + s_k,

  and the update returned is :math:`y_{k+1} - y_k` in float32, on which
  ``optax.apply_updates`` lands exactly (see :func:`params_update`). The bits
  come from ``seed`` and the wrapper's own step count.

  The inner state is initialised from float32 params, so its buffers are
  float32 (twice the bytes of bfloat16 or float16) unless the inner optimizer
  has its own dtype option (``optax.adam(..., mu_dtype=jnp.bfloat16)``);
  optfree's own optimizers take ``rounding="stochastic"`` instead and keep
  every buffer in the params' dtype, rounded stochastically too.

  Args:
    inner: any optax transformation whose output is the params' update.
    seed: an integer in [0, 2**32) that the random bits are derived from.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` (extra arguments go to the
    inner optimizer) whose state is a :class:`StochasticRoundingState`;
    ``update`` needs the params.

  Raises:
    TypeError: when ``inner`` is not a transformation, e.g. the factory
      ``optax.adam`` instead of the optimizer ``optax.adam(1e-3)``.
    ValueError: when ``seed`` is not an integer in [0, 2**32).

  References:
    Gupta et al., `Deep Learning with Limited Numerical Precision
    <https://arxiv.org/abs/1502.02551>`_, ICML 2015.

    Zamirai et al., `Revisiting BFloat16 Training
    <https://arxiv.org/abs/2010.06192>`_, 2020.

  Example:
    >>> import jax.numpy as jnp, optax, optfree
    >>> params = jnp.full(1000, 1.0, jnp.bfloat16)
    >>> opt = optfree.stochastic_rounding(optax.sgd(1e-3))
    >>> state = opt.init(params)
    >>> for _ in range(100):  # each step is 1/8 of an ulp of 1.0
    ...   grads = jnp.ones_like(params)
    ...   updates, state = opt.update(grads, state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> print(params.dtype, round(float(params.astype(float).mean()), 2))
    bfloat16 0.9
    >>> nearest = jnp.full(1000, 1.0, jnp.bfloat16) - 1e-3
    >>> print(nearest.astype(float).mean())  # nearest rounding never moves
    1.0
  """
  _checks.check_transformation("stochastic_rounding", "inner", inner)
  check_rounding("stochastic", seed)
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    check_dtypes("stochastic_rounding", "stochastic", params)
    return StochasticRoundingState(
        count=jnp.zeros([], jnp.int32),
        inner_state=inner.init(_tree.widen(params)))

  def update_fn(updates, state, params=None, **extra_args):
    steps, inner_state = inner.update(
        _tree.widen(updates), state.inner_state, _tree.widen(params),
        **extra_args)
    to_update = params_update("stochastic", seed, state.count)
    rounded = _tree.map_leaves(
        lambda index, step, param: to_update(step, param, index),
        steps, params)
    return rounded, StochasticRoundingState(
        count=optax.safe_increment(state.count), inner_state=inner_state)

  # Non-float leaves, missing params, extra arguments and the placement of
  # the count under sharding are handled as for every public optimizer.
  return _public.public_transformation(
      "stochastic_rounding",
      optax.GradientTransformationExtraArgs(init_fn, update_fn))


def params_write(
    rounding: str,
    seed: int,
    *last: optax.GradientTransformation,
) -> tuple[optax.GradientTransformation, ...]:
  """The last stages of an optimizer's chain, those that write the params.

  Args:
    rounding: ``"nearest"`` or ``"stochastic"``.
    seed: the optimizer's seed.
    *last: the transformations after the optimizer's own scaling (weight
      decay, learning rate, sign), whose output is the params' update.

  Returns:
    With nearest rounding, ``last`` as given (the chain's state is as if
    they were chained directly). With stochastic rounding, one stage,
    :func:`stochastic_rounding` of them: they run in float32 and the params'
    write is rounded once, stochastically (its state adds a step count, no
    buffer).
  """
  if rounding == "nearest":
    return last
  inner = last[0] if len(last) == 1 else optax.chain(*last)
  return (stochastic_rounding(inner, seed=seed),)
