"""optax's generic optimizer-contract tests, applied to every optfree optimizer.

Source: google-deepmind/optax, ``optax/_src/alias_test.py``, the version
shipped in optax 0.2.8 (the "COMMON TESTS" of ``AliasTest``). License of the
source: Apache-2.0 (Copyright 2019 DeepMind Technologies Limited). The
problems, step counts, dtypes and tolerances are optax's; the optimizers are
the entries of tests/optimizer_table.py (``OPTIMIZERS``) in place of optax's
``_OPTIMIZERS_UNDER_TEST``, and the code is optfree's.

Ported: ``test_optimization`` (parabola and Rosenbrock in float32, 10,000
steps, ``tree_map_params`` on the state, no recompilation on the second
call, params within 3e-2), ``test_optimizers_accept_extra_args``,
``test_optimizers_can_be_wrapped_in_inject_hyperparams``,
``test_explicit_dtype``, ``test_preserve_dtype``,
``test_state_shape_dtype_shard_stability`` and
``test_gradient_accumulation``.

Adapted:
- Learning rates for ``test_optimization``: optax gives each optimizer its
  own (``_OPTIMIZERS_UNDER_TEST``); ``CONVERGENCE_KWARGS`` below gives
  optfree's, each with the optax entry it follows. Everything else uses the
  table's hyperparameters.
- The steps run in a jitted ``fori_loop``, called for the first step and
  again for the other 9,999: the second call must not compile (optax checks
  its jitted step's second call).
- ``test_preserve_dtype`` runs jitted, eagerly and under ``pmap`` (over
  one device), the chex variants of the version at commit
  00eedf48d4bba9de02e0aa31ede98afd5ca024fe (0.2.8 keeps only ``jit``).
- ``test_state_shape_dtype_shard_stability``: optax also selects between
  the state before and after the step with a second ``lax.cond``; the
  step's own ``lax.cond`` already requires the two to agree, and the second
  step must reuse the first one's compilation (checked instead).
- ``test_optimizers_accept_extra_args`` also checks that the extra argument
  changes nothing (optax's only runs the steps).
- ``test_explicit_dtype``: optax checks ``sgd``'s ``accumulator_dtype`` and
  ``adam``'s ``mu_dtype``; here each optfree optimizer's own argument
  (``state_dtype`` for Schedule-Free, whose buffer is ``z``; ``mu_dtype`` for
  AdaBound and Lion, buffer ``mu``).
- Complex params and complex state dtypes (optax's ``complex64`` and
  ``complex128`` cases): optfree does not support them
  (docs/guides/errors.md, "Dtypes"; optax itself skips ``lion`` there). They
  run with optax's inputs, marked ``xfail(strict=True)`` on the error.

Left out: the algorithm-specific tests of the file (L-BFGS, line searches),
which test optax's own algorithms, and the earlier version's chex variants of
``test_gradient_accumulation`` and of the ``inject_hyperparams`` test (run
jitted here, as in 0.2.8; tests/test_distributed.py runs every optimizer
under ``pmap``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.optimizer_table import OPTIMIZER_IDS, OPTIMIZERS, stand_in_loss

COMPLEX_UNSUPPORTED = pytest.mark.xfail(
    strict=True, raises=(TypeError, ValueError),
    reason="optfree does not support complex params or state"
    " (docs/guides/errors.md, Dtypes)")

# Hyperparameters for test_optimization, where they differ from the table's.
CONVERGENCE_KWARGS = {
    # The rate of optax's Schedule-Free tests, 1e-2 (the table's 0.1
    # diverges on Rosenbrock, whose curvature reaches 1000).
    "schedule_free_sgd": dict(learning_rate=1e-2),
    # AdaBound ends as SGD at final_lr: optax's sgd entry's rate, 1e-3 (the
    # table's 0.1 diverges on Rosenbrock), from optax's adam rate, 1e-1.
    "adabound": dict(learning_rate=1e-1, final_lr=1e-3),
    "amsbound": dict(learning_rate=1e-1, final_lr=1e-3),
    # And no weight decay (the default): as in the reference, the decoupled
    # decay removes weight_decay of the weights per step, unscaled by the
    # rate, so the table's 1e-3 against a 1e-3 SGD rate moves the fixed point
    # far past the tolerance (0.3 away on the parabola).
    "adaboundw": dict(learning_rate=1e-1, final_lr=1e-3, weight_decay=0.0),
    # optax's lion entry: learning_rate=1e-2, weight_decay=1e-4.
    "lion": dict(learning_rate=1e-2, weight_decay=1e-4),
}


def dtype_param(dtype, *args):
  """A parameter set for ``dtype``, expected to fail where it is complex."""
  complex_ = any(jnp.issubdtype(jnp.dtype(d), jnp.complexfloating)
                 for d in (dtype, *args) if d is not None)
  return pytest.param(dtype, *args, marks=[COMPLEX_UNSUPPORTED] if complex_
                      else [], id="-".join(str(d) for d in (dtype, *args)))


def setup_parabola(dtype):
  """Quadratic function as an optimization target (optax's)."""
  initial_params = jnp.array([-1.0, 10.0, 1.0], dtype=dtype)
  final_params = jnp.array([1.0, -1.0, 1.0], dtype=dtype)
  if jnp.iscomplexobj(initial_params):
    final_params *= 1 + 1j

  def objective(params):
    return jnp.sum(jnp.abs(params - final_params) ** 2)

  return initial_params, final_params, objective


def setup_rosenbrock(dtype):
  """Rosenbrock function as an optimization target (optax's)."""
  a, b = 1.0, 100.0
  if jnp.issubdtype(jnp.dtype(dtype), jnp.complexfloating):
    a *= 1 + 1j
  initial_params = jnp.array([0.0, 0.0], dtype=dtype)
  final_params = jnp.array([a, a**2], dtype=dtype)

  def objective(params):
    return (jnp.abs(a - params[0]) ** 2
            + b * jnp.abs(params[1] - params[0] ** 2) ** 2)

  return initial_params, final_params, objective


def update_step(opt, objective):
  def step(params, state):
    # The loss too: optfree.schedule_free_plus takes it (the others ignore it).
    value, updates = jax.value_and_grad(objective)(params)
    # Complex gradients need to be conjugated (as optax's test does).
    updates = jax.tree.map(lambda x: x.conj(), updates)
    updates, state = opt.update(updates, state, params, value=value)
    return optax.apply_updates(params, updates), state

  return step


@pytest.mark.parametrize("dtype", [dtype_param("float32"),
                                   dtype_param("complex64")])
@pytest.mark.parametrize("target", [setup_parabola, setup_rosenbrock],
                         ids=["parabola", "rosenbrock"])
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_optimization(entry, target, dtype):
  opt = entry.make(**CONVERGENCE_KWARGS.get(entry.name, {}))
  initial_params, final_params, objective = target(dtype)
  step = update_step(opt, objective)

  @jax.jit
  def steps(params, state, count):
    return jax.lax.fori_loop(0, count, lambda _, carry: step(*carry),
                             (params, state))

  params = initial_params
  state = opt.init(params)
  # A no-op change, to verify that tree map works.
  state = optax.tree.map_params(opt, lambda v: v, state)
  params, state = steps(params, state, 1)
  params, state = steps(params, state, 10_000 - 1)
  # The second call reused the first call's compilation.
  assert steps._cache_size() == 1  # pylint: disable=protected-access
  np.testing.assert_allclose(params, final_params, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_optimizers_accept_extra_args(entry):
  opt = entry.make()
  initial_params, _, objective = setup_rosenbrock(jnp.float32)

  def run(**update_kwargs):
    @jax.jit
    def step(params, state):
      value, updates = jax.value_and_grad(objective)(params)
      updates, state = opt.update(updates, state, params, value=value,
                                  **update_kwargs)
      return optax.apply_updates(params, updates), state

    params, state = initial_params, opt.init(initial_params)
    for _ in range(2):
      params, state = step(params, state)
    return params, state

  with_extra = run(unexpected_extra_args_your_optimizer_doesnt_expect=1)
  jax.tree.map(np.testing.assert_array_equal, with_extra, run())


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_optimizers_can_be_wrapped_in_inject_hyperparams(entry):
  opt = entry.make()
  opt_inject = optax.inject_hyperparams(entry.factory)(**entry.kwargs)
  params = [jnp.negative(jnp.ones((2, 3))), jnp.ones((2, 5, 2))]
  grads = [jnp.ones((2, 3)), jnp.negative(jnp.ones((2, 5, 2)))]

  value = stand_in_loss(params)
  state = opt.init(params)
  updates, new_state = jax.jit(opt.update)(grads, state, params, value=value)
  state_inject = opt_inject.init(params)
  updates_inject, new_state_inject = jax.jit(opt_inject.update)(
      grads, state_inject, params, value=value)

  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3),
               updates_inject, updates)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4),
               new_state_inject.inner_state, new_state)


# Each optimizer's argument for the dtype of its param-sized state, and the
# name of the buffer it sets.
STATE_DTYPE = {
    "schedule_free_sgd": ("state_dtype", "z"),
    "schedule_free_adamw": ("state_dtype", "z"),
    "schedule_free_radam": ("state_dtype", "z"),
    "schedule_free_wrapper": ("state_dtype", "z"),
    "adabound": ("mu_dtype", "mu"),
    "amsbound": ("mu_dtype", "mu"),
    "adaboundw": ("mu_dtype", "mu"),
    "lion": ("mu_dtype", "mu"),
    "schedule_free_plus": ("state_dtype", "z"),
}
EXPLICIT_DTYPES = ("bfloat16", "float32", "complex64", None)


@pytest.mark.parametrize("params_dtype,state_dtype", [
    dtype_param(params_dtype, state_dtype)
    for params_dtype in EXPLICIT_DTYPES for state_dtype in EXPLICIT_DTYPES])
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_explicit_dtype(entry, params_dtype, state_dtype):
  argument, attribute_name = STATE_DTYPE[entry.name]
  opt = entry.make(**{argument: state_dtype})
  params_dtype = jax.dtypes.canonicalize_dtype(params_dtype)
  params = jnp.array([0.0, 0.0], dtype=params_dtype)
  state = opt.init(params)
  if state_dtype is None:
    expected_dtype = params_dtype
  else:
    expected_dtype = jax.dtypes.canonicalize_dtype(state_dtype)
  assert optax.tree.get(state, attribute_name).dtype == expected_dtype


def one_device(fn):
  """``fn`` under ``jax.pmap`` over one device (chex's with_pmap variant)."""
  def mapped(*args):
    stacked = jax.tree.map(lambda x: jnp.asarray(x)[None], args)
    return jax.tree.map(lambda x: x[0], jax.pmap(fn)(*stacked))
  return mapped


VARIANTS = {"jit": jax.jit, "without_jit": lambda fn: fn, "pmap": one_device}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_preserve_dtype(entry, dtype, variant):
  # The updates have the gradients' dtype.
  opt = entry.make()
  fun = lambda x: jnp.sum(x**2)
  params = jnp.array([1.0, 2.0], dtype=jnp.dtype(dtype))
  value, grads = jax.value_and_grad(fun)(params)
  state = opt.init(params)
  update = lambda g, s, p, v: opt.update(g, s, p, value=v)  # noqa: E731
  updates, _ = VARIANTS[variant](update)(grads, state, params, value)
  assert updates.dtype == grads.dtype


@pytest.mark.parametrize("dtype", [
    dtype_param(dtype) for dtype in ("float16", "bfloat16", "float32",
                                     "float64", "complex64", "complex128")])
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_state_shape_dtype_shard_stability(entry, dtype):
  with jax.enable_x64(dtype in ("float64", "complex128")):
    dtype = jnp.dtype(dtype)
    opt = entry.make()
    initial_params, _, objective = setup_parabola(dtype)
    update = update_step(opt, objective)

    @jax.jit
    def step(params, state):
      # Both branches of a lax.cond must agree in shape, dtype and sharding:
      # a state that drifts fails to trace.
      cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
      return jax.lax.cond(cond, lambda: update(params, state),
                          lambda: (params, state))

    params, state = initial_params, opt.init(initial_params)
    for _ in range(2):
      params, state = step(params, state)
      assert jax.tree.leaves(params)[0].dtype == dtype
    # The second call ran the first call's compilation: same state types.
    assert step._cache_size() == 1  # pylint: disable=protected-access


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_gradient_accumulation(entry, dtype):
  # optax.MultiSteps applies nothing until its k-th gradient.
  opt = optax.MultiSteps(entry.make(), every_k_schedule=4)
  fun = lambda x: jnp.sum(x**2)
  params = jnp.array([1.0, 2.0], dtype=jnp.dtype(dtype))
  value, grads = jax.value_and_grad(fun)(params)
  state = opt.init(params)
  updates, _ = jax.jit(opt.update)(grads, state, params, value=value)
  np.testing.assert_array_equal(updates, jnp.zeros_like(grads))
