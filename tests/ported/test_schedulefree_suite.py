"""The reference package's own tests, ported to optfree's Schedule-Free.

Source: PyPI package ``schedulefree`` 1.4.1 (facebookresearch/schedule_free),
file ``schedulefree/test_schedulefree.py`` as the wheel installs it, with its
helper ``compare_schedulefree_versions``. The algorithms its tests compare
optfree with are ported to numpy in this file from the same package: the
explicit x, y, z forms (``sgd_schedulefree_reference.py``,
``adamw_schedulefree_reference.py``, ``wrap_schedulefree_reference.py``) and
the closure forms, whose params hold x (``sgd_schedulefree_closure.py``,
``adamw_schedulefree_closure.py``, ``radam_schedulefree_closure.py``).
License of the sources: Apache-2.0 (the package metadata's classifier
"License :: OSI Approved :: Apache Software License", and the Apache License
2.0 text shipped as its LICENSE; Copyright (c) Meta Platforms, Inc. and
affiliates). Hyperparameters, step counts and float32 tolerances are
upstream's; inputs are drawn as upstream draws them (weights like
``torch.randn``, gradients like ``torch.rand_like``, independent of the
weights), from numpy's generator.

How upstream's relations map onto optfree: ``SGDScheduleFree``,
``AdamWScheduleFree`` and ``RAdamScheduleFree`` are
``optfree.schedule_free_sgd``/``adamw``/``radam``; ``ScheduleFreeWrapper``
over ``torch.optim.SGD`` is ``optfree.schedule_free(optax.sgd(lr), lr)``; the
``*Reference`` and ``*Closure`` classes are the numpy ports. The weights
after ``train()`` are optfree's params (y), after ``eval()``
``optfree.eval_params`` (x), and the state's ``z`` is optfree's
``ScheduleFreeState.z``. Every comparison is made after every step, for y, x
and z (upstream checks a subset in some tests, named in each test; the
flattened optimizer of ``test_foreach`` keeps z as one vector and is
compared in y and x).

Tolerances: each test runs in upstream's float32 at upstream's tolerance
(its ``allclose`` helper, ``rtol=1e-5, atol=1e-6``, or ``torch.allclose``'s
defaults where upstream calls that), the numpy port computing in float32
with Python-float scalars as the torch code does; and in float64
(``jax.enable_x64`` for the test only) at ``rtol=1e-12, atol=1e-14``, where
optfree agrees with every port to 2e-13 relative (at most 7% of that
tolerance). One exception, RAdam against its port's own rho_t (see
``RADAM_CASES``): the reference's formula loses 1e-11 to cancellation, which
moves its trajectory 8e-14 away; compared at ``atol=1e-12``, and with
that formula evaluated exactly at the tight tolerance.

Adapted:
- ``test_schedulefree_wrapper_reference`` also compares optfree's wrapper
  (documented as ``ScheduleFreeWrapperReference``) with the port.
- ``test_schedulefree_sgd`` and ``test_schedulefree_adam`` compare with both
  the closure form and the reference, as upstream does; the
  ``SGDScheduleFree``/``...Closure`` equality itself has no counterpart
  (optfree has one implementation), so "optimized equals closure" becomes
  "optfree equals the port of the closure form".
- ``test_schedulefree_radam`` adds ``silent_sgd_phase=False`` to upstream's
  default ``True``.
- ``test_foreach``: ``foreach=True`` (one multi-tensor kernel over several
  params) against ``foreach=False`` (a loop over them) becomes one optimizer
  over a tree of leaves, and over the tree raveled into one buffer
  (``optax.flatten``), against one optimizer per leaf; upstream's param
  without a gradient (``grad is None``, never touched) is frozen with
  ``optax.partition`` and ``optax.set_to_zero`` and must stay put.
  Upstream's empty param group has no counterpart (an empty tree).
- ``test_equiv`` keeps upstream's lerp algebra with its numbers and checks
  the same relations on one optfree step set up at that point (y = 1,
  z = 2, averaging coefficient 0.05, zero gradient).
- ``test_compile``: ``torch.compile`` (commented out in 1.4.1, so upstream
  compares two uncompiled optimizers) becomes ``jax.jit`` against the step
  run op by op under ``jax.disable_jit``, in float32 only.

Left out: the closure API (``step(closure)``) and ``.cuda()`` tensors
(upstream needs a GPU; these run on any backend); the ``print`` calls; and
``train()``/``eval()`` switching itself: optfree keeps y as the params and
derives x without changing them, so upstream's round trip y -> x -> y
between steps (two lerps that round, in the optimized classes) has no
counterpart; the numpy ports make no round trip either.
"""

import decimal
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optfree

# Upstream's learning rate and momentum (b1) in every test.
LR = 0.3
B1 = 0.9
SHAPE = (3, 2)


# Upstream's ``allclose`` helper, and ``torch.allclose``'s defaults.
UPSTREAM_ALLCLOSE = dict(rtol=1e-5, atol=1e-6)
TORCH_ALLCLOSE = dict(rtol=1e-5, atol=1e-8)
FLOAT64_TOLERANCE = dict(rtol=1e-12, atol=1e-14)


@pytest.fixture(params=["float64", "float32"])
def dtype(request):
  """float64 (tight tolerances) and upstream's float32 (its tolerances)."""
  with jax.enable_x64(request.param == "float64"):
    yield np.dtype(request.param)


def tolerance(dtype, float32):
  """Upstream's float32 tolerance ``float32``, or this file's float64 one."""
  return FLOAT64_TOLERANCE if dtype == np.float64 else float32


def inputs(steps, dtype, shape=SHAPE, seed=1):
  """A weight like ``torch.randn`` and gradients like ``torch.rand_like``."""
  rng = np.random.default_rng(seed)
  weight = rng.standard_normal(shape).astype(dtype)
  grads = rng.random((steps, *shape)).astype(dtype)
  return weight, grads


def assert_close(actual, desired, tol):
  jax.tree.map(
      lambda a, d: np.testing.assert_allclose(np.asarray(a), np.asarray(d),
                                              **tol),
      actual, desired)


def schedule_free_state(state):
  (found,) = [
      node for node in jax.tree.leaves(
          state, is_leaf=lambda n: isinstance(n, optfree.ScheduleFreeState))
      if isinstance(node, optfree.ScheduleFreeState)
  ]
  return found


@functools.partial(jax.jit, static_argnums=0)
def run(opt, params, grads):
  """One update per gradient; per step the params after it.

  Returns ``(y, x, z)`` trajectories: y the params (upstream's weight after
  ``train()``), x ``eval_params`` (after ``eval()``), z from the state.
  """

  def step(carry, grad):
    params, state = carry
    updates, state = opt.update(grad, state, params)
    params = optax.apply_updates(params, updates)
    trajectory = (params, optfree.eval_params(state, params),
                  schedule_free_state(state).z)
    return (params, state), trajectory

  return jax.lax.scan(step, (params, opt.init(params)), grads)[1]


# --- numpy ports of the reference's algorithms -------------------------------
# Each takes the gradients and returns (y, x, z) trajectories like ``run``.
# Scalars are Python floats and arrays are in the inputs' dtype, as in the
# reference's float32 tensors with Python-float hyperparameters.


def lerp(start, end, weight):
  return start + weight * (end - start)


def warmup_lrs(steps, lr, warmup_steps):
  """``lr * sched`` of the SGD and AdamW step: a linear warmup."""
  return [lr * ((k + 1) / warmup_steps if k < warmup_steps else 1.0)
          for k in range(steps)]


def radam_rho(k, b2):
  """RAdam's rho_inf and rho_t of update ``k``, as the reference has them."""
  step = k + 1
  beta2_t = b2**step
  rho_inf = 2 / (1 - b2) - 1
  return rho_inf, rho_inf - 2 * step * beta2_t / (1 - beta2_t)


def exact_radam_rho(k, b2):
  """The same, in 50-digit decimals of the float ``b2``, then rounded."""
  with decimal.localcontext(prec=50):
    b2 = decimal.Decimal(b2)
    step = k + 1
    beta2_t = b2**step
    rho_inf = 2 / (1 - b2) - 1
    return float(rho_inf), float(rho_inf - 2 * step * beta2_t / (1 - beta2_t))


def radam_lrs(steps, lr, b2, silent_sgd_phase, rho=radam_rho):
  """``lr * rect`` of ``RAdamScheduleFree.step``."""
  lrs = []
  for k in range(steps):
    rho_inf, rho_t = rho(k, b2)
    rect = (((rho_t - 4) * (rho_t - 2) * rho_inf
             / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            if rho_t > 4.0 else float(not silent_sgd_phase))
    lrs.append(lr * rect)
  return lrs


def averaging_coefficients(lrs):
  """``ckp1`` of each step, from the learning rates of the z-steps.

  With upstream's defaults ``r=0`` and ``weight_lr_power=2``. (The wrapper
  starts ``lr_max`` at 0, the others at -1: the same for positive rates.)
  """
  r, weight_lr_power = 0.0, 2.0
  lr_max, weight_sum, coefficients = -1.0, 0.0, []
  for k, lr in enumerate(lrs):
    lr_max = max(lr, lr_max)
    weight = (k + 1)**r * lr_max**weight_lr_power
    weight_sum += weight
    coefficients.append(weight / weight_sum if weight_sum else 0.0)
  return coefficients


def sgd_direction(decay):
  """SGD's direction: the gradient plus weight decay computed at y."""

  def direction(grad, y, k, exp_avg_sq):
    del k
    return grad + decay * y, exp_avg_sq

  return direction


def adam_direction(decay, b2=0.999, eps=1e-8, normalize=lambda k: True):
  """AdamW's (and RAdam's, with ``normalize``) direction, decay at y."""

  def direction(grad, y, k, exp_avg_sq):
    exp_avg_sq = exp_avg_sq * b2 + grad * grad * (1 - b2)
    if normalize(k):
      denom = np.sqrt(exp_avg_sq / (1 - b2**(k + 1))) + eps
      grad = grad / denom
    return grad + decay * y, exp_avg_sq

  return direction


def radam_direction(decay, b2=0.999, eps=1e-8):
  return adam_direction(decay, b2, eps, lambda k: radam_rho(k, b2)[1] > 4.0)


def descent(direction):
  """The z-step of ``SGDScheduleFreeReference`` and ``AdamW...Reference``.

  (``AdamWScheduleFreeReference`` subtracts the decay and the normalized
  gradient from z one after the other: the same up to rounding.)
  """

  def z_step(z, y, grad, lr, k, exp_avg_sq):
    d, exp_avg_sq = direction(grad, y, k, exp_avg_sq)
    return z - lr * d, exp_avg_sq

  return z_step


def wrapped_sgd(weight_decay_at_y):
  """The z-step of ``ScheduleFreeWrapperReference`` over ``torch.optim.SGD``.

  z is decayed at y, copied into the params, and the base SGD steps them.
  """

  def z_step(z, y, grad, lr, k, exp_avg_sq):
    del k
    params = z - lr * weight_decay_at_y * y
    return params - lr * grad, exp_avg_sq

  return z_step


def explicit_reference(weight, grads, lrs, z_step, b1=B1):
  """``*ScheduleFreeReference.step``: x, y and z kept explicitly."""
  x, y, z = weight, weight, weight
  exp_avg_sq = np.zeros_like(weight)
  trajectory = []
  for k, (grad, lr, c) in enumerate(
      zip(grads, lrs, averaging_coefficients(lrs))):
    z, exp_avg_sq = z_step(z, y, grad, lr, k, exp_avg_sq)
    x = x * (1 - c) + z * c
    y = x * b1 + z * (1 - b1)
    trajectory.append((y, x, z))
  return tuple(np.stack(column) for column in zip(*trajectory))


def closure_reference(weight, grads, lrs, direction, b1=B1):
  """``*ScheduleFreeClosure.step``: the params hold x, y is extrapolated.

  Upstream's y of the closure form is ``p_closure.lerp(z, 1 - 0.9)``.
  """
  x, z = weight, weight
  exp_avg_sq = np.zeros_like(weight)
  trajectory = []
  for k, (grad, lr, c) in enumerate(
      zip(grads, lrs, averaging_coefficients(lrs))):
    y = lerp(x, z, 1 - b1)  # extrapolate; the closure's gradient is at y
    d, exp_avg_sq = direction(grad, y, k, exp_avg_sq)
    x = lerp(y, z, 1 - 1 / b1)  # unextrapolate
    z = z - lr * d
    x = lerp(x, z, c)
    trajectory.append((lerp(x, z, 1 - b1), x, z))
  return tuple(np.stack(column) for column in zip(*trajectory))


# --- the tests ---------------------------------------------------------------
# Upstream's hyperparameters. Each optimizer is built once, so that tests
# sharing it (and a shape and dtype) share its compiled run.
WRAPPER_DECAY = 0.1  # the wrapper tests: no warmup
DECAY, WARMUP = 0.5, 5  # the other tests (RAdam has no warmup)
SGD_WITH_DECAY = optfree.schedule_free_sgd(LR, b1=B1,
                                           weight_decay=WRAPPER_DECAY)
WRAPPER = optfree.schedule_free(optax.sgd(LR), LR, b1=B1,
                                weight_decay_at_y=WRAPPER_DECAY)
SGD = optfree.schedule_free_sgd(LR, warmup_steps=WARMUP, weight_decay=DECAY)
ADAMW = optfree.schedule_free_adamw(LR, warmup_steps=WARMUP,
                                    weight_decay=DECAY)
RADAM = {
    silent: optfree.schedule_free_radam(LR, weight_decay=DECAY,
                                        silent_sgd_phase=silent)
    for silent in (True, False)
}


def test_schedulefree_wrapper(dtype):
  # SGDScheduleFree with weight decay equals ScheduleFreeWrapper over SGD
  # with the decay at y: after each step (y) and in eval mode (x); here
  # also z.
  weight, grads = inputs(100, dtype)
  assert_close(run(SGD_WITH_DECAY, weight, grads),
               run(WRAPPER, weight, grads),
               tolerance(dtype, UPSTREAM_ALLCLOSE))


@pytest.mark.parametrize("optimizer", ["schedule_free_sgd", "schedule_free"])
def test_schedulefree_wrapper_reference(dtype, optimizer):
  # SGDScheduleFree equals ScheduleFreeWrapperReference (x, y, z kept
  # explicitly) over SGD, in train mode (y) and eval mode (x); here also z,
  # and optfree's wrapper against it too.
  opt = {"schedule_free_sgd": SGD_WITH_DECAY, "schedule_free": WRAPPER}
  weight, grads = inputs(100, dtype)
  expected = explicit_reference(weight, grads, [LR] * 100,
                                wrapped_sgd(WRAPPER_DECAY))
  assert_close(run(opt[optimizer], weight, grads), expected,
               tolerance(dtype, UPSTREAM_ALLCLOSE))


def check_against_reference_forms(opt, lrs, direction, dtype,
                                  float32_tolerance):
  """optfree against the closure form and the explicit reference.

  Upstream compares, after each step, the weights in eval mode (x) and z
  (SGD and Adam), and the weights in train mode (y) with the closure's
  ``lerp(x, z, 1 - b1)`` and the reference's y (Adam); here all three.
  """
  weight, grads = inputs(len(lrs), dtype)
  actual = run(opt, weight, grads)
  tol = tolerance(dtype, float32_tolerance)
  assert_close(actual, closure_reference(weight, grads, lrs, direction), tol)
  assert_close(actual, explicit_reference(weight, grads, lrs,
                                          descent(direction)), tol)


def test_schedulefree_sgd(dtype):
  # SGDScheduleFree equals SGDScheduleFreeClosure and SGDScheduleFreeReference.
  check_against_reference_forms(SGD, warmup_lrs(10, LR, WARMUP),
                                sgd_direction(DECAY), dtype, TORCH_ALLCLOSE)


def test_schedulefree_adam(dtype):
  # AdamWScheduleFree equals AdamWScheduleFreeClosure and
  # AdamWScheduleFreeReference.
  check_against_reference_forms(ADAMW, warmup_lrs(10, LR, WARMUP),
                                adam_direction(DECAY), dtype,
                                UPSTREAM_ALLCLOSE)


# The reference's rho_t subtracts two numbers near rho_inf = 1999 to get one
# near the step count: in float64 it is off by up to 1.5e-11 in the first
# steps, which moves its trajectory up to 8e-14 away. optfree's rho_t is
# accurate to 2e-15 (its _radam_rho); with the reference's formula evaluated
# exactly, the trajectories agree to 7e-16.
RADAM_CASES = [
    pytest.param("float64", radam_rho, dict(rtol=1e-12, atol=1e-12),
                 id="float64-reference_rho"),
    pytest.param("float64", exact_radam_rho, FLOAT64_TOLERANCE,
                 id="float64-exact_rho"),
    pytest.param("float32", radam_rho, UPSTREAM_ALLCLOSE, id="float32"),
]


@pytest.mark.parametrize("dtype,rho,tol", RADAM_CASES, indirect=["dtype"])
@pytest.mark.parametrize("silent_sgd_phase", [True, False])
def test_schedulefree_radam(dtype, rho, tol, silent_sgd_phase):
  # RAdamScheduleFree equals RAdamScheduleFreeClosure, in eval mode (x, z)
  # and in train mode (y). Steps 1 to 4 are its SGD phase (rho_t <= 4).
  b2 = 0.999
  weight, grads = inputs(20, dtype)
  expected = closure_reference(
      weight, grads, radam_lrs(20, LR, b2, silent_sgd_phase, rho),
      radam_direction(DECAY, b2))
  assert_close(run(RADAM[silent_sgd_phase], weight, grads), expected, tol)


def test_foreach(dtype):
  # AdamWScheduleFree with foreach=True (one multi-tensor kernel over a param
  # list) equals foreach=False (a loop over the params), with a param that
  # gets no gradient. Here: one optimizer over a tree of leaves, and over the
  # tree flattened into one buffer (optax.flatten), equals one optimizer per
  # leaf; the param without gradient is frozen (optax.partition with
  # set_to_zero, optax's way to leave a param out) and stays put.
  steps = 10
  params, grads = {}, {}
  for seed, (name, shape) in enumerate(
      [("weight", (3, 2)), ("weight2", (1, 1)), ("weight_nograd", (1, 2))]):
    params[name], grads[name] = inputs(steps, dtype, shape, seed)
  labels = {"weight": "train", "weight2": "train", "weight_nograd": "frozen"}
  y, x, z = run(
      optax.partition({"train": ADAMW, "frozen": optax.set_to_zero()},
                      labels), params, grads)
  # (eval_params cannot find x under a partition of a flattened optimizer:
  # its z holds the trained leaves only, and the state does not say which.)
  trained = ("weight", "weight2")
  y_flat, x_flat, _ = run(optax.flatten(ADAMW),
                          {name: params[name] for name in trained},
                          {name: grads[name] for name in trained})
  tol = tolerance(dtype, TORCH_ALLCLOSE)
  for name in trained:
    expected = run(ADAMW, params[name], grads[name])
    assert_close((y[name], x[name], z[name]), expected, tol)
    assert_close((y_flat[name], x_flat[name]), expected[:2], tol)
  for trajectory in (y, x):
    np.testing.assert_array_equal(
        trajectory["weight_nograd"],
        np.broadcast_to(params["weight_nograd"], (steps, 1, 2)))


def test_equiv(x64):
  del x64
  # Upstream's algebra of the lerp form, with its numbers.
  momentum, ckp1 = 0.9, 0.05
  y, z = np.array([1.0]), np.array([2.0])
  x = lerp(y, z, 1 - 1 / momentum)  # y -> x
  x_updated = lerp(x, z, ckp1)  # x update
  model1 = lerp(x_updated, z, 1 - momentum)  # x -> y
  model2 = lerp(y, z, ckp1)
  np.testing.assert_allclose(model1, model2, rtol=1e-15)
  # Update x, then x -> y, equals one fused lerp.
  np.testing.assert_allclose(
      lerp(lerp(model1, z, ckp1), z, 1 - momentum),
      lerp(model2, z, 1 - momentum * (1 - ckp1)), rtol=1e-15)

  # The same relations on one optfree step from that point: y = 1, z = 2,
  # averaging coefficient 0.05 (weight 1 after a weight sum of 19), and a
  # zero gradient, so that z stays at 2 as in upstream's test.
  opt = optfree.schedule_free_sgd(1.0, b1=momentum)
  state = opt.init(jnp.asarray(y))
  state = state._replace(
      z=jnp.asarray(z), lr_max=jnp.asarray(1.0, state.lr_max.dtype),
      weight_sum=jnp.asarray(19.0, state.weight_sum.dtype))
  x_before = jax.jit(optfree.eval_params)(state, jnp.asarray(y))
  updates, state = jax.jit(opt.update)(jnp.zeros(1), state, jnp.asarray(y))
  y_after = optax.apply_updates(jnp.asarray(y), updates)
  np.testing.assert_allclose(x_before, x, rtol=1e-15)
  np.testing.assert_allclose(jax.jit(optfree.eval_params)(state, y_after),
                             x_updated, rtol=1e-15)
  np.testing.assert_allclose(y_after, model2, rtol=1e-15)
  np.testing.assert_allclose(
      y_after, lerp(x_before, z, 1 - momentum * (1 - ckp1)), rtol=1e-15)


def test_compile():
  # Upstream compares AdamWScheduleFree's train/step/eval wrapped in
  # torch.compile with the uncompiled optimizer (its decorators are commented
  # out in 1.4.1, so it runs both uncompiled). Here: the step under jax.jit
  # against the same step run op by op (jax.disable_jit), in y, x and z, in
  # upstream's float32 (float64 would add only the eager run's 1 s), at 10
  # times torch.allclose's rtol: the two differ by at most 4 ulp.
  weight, grads = inputs(10, np.float32)

  def step(params, state, grad):
    updates, state = ADAMW.update(grad, state, params)
    params = optax.apply_updates(params, updates)
    return params, state, optfree.eval_params(state, params)

  compiled = jax.jit(step)
  params_c = params_u = jnp.asarray(weight)
  state_c = state_u = ADAMW.init(params_c)
  for grad in grads:
    params_c, state_c, x_c = compiled(params_c, state_c, grad)
    with jax.disable_jit():
      params_u, state_u, x_u = step(params_u, state_u, grad)
    assert_close((params_c, x_c, state_c.z), (params_u, x_u, state_u.z),
                 dict(rtol=1e-6, atol=1e-7))
