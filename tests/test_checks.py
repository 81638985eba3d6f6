"""Unit tests of optfree/_checks.py, the validation every constructor uses.

Each check must raise ``ValueError`` whose message names the argument and the
offending value, and must let through what cannot be inspected at
construction: a schedule (callable) and a tracer (an injected hyperparameter
under ``jit``).
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optfree import _checks


def _raises_naming(check, name, value, *args, **kwargs):
  """Asserts ``check(name, value, ...)`` raises ValueError naming both."""
  with pytest.raises(ValueError) as info:
    check(name, value, *args, **kwargs)
  message = str(info.value)
  assert name in message
  assert repr(value) in message
  return message


# check_interval ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value, low, high, low_closed, high_closed",
    [
        (0.0, 0.0, 1.0, True, True),
        (1.0, 0.0, 1.0, True, True),
        (0.5, 0.0, 1.0, False, False),
        (0.999, 0.0, 1.0, True, False),
        (-5.0, -math.inf, 0.0, True, True),
        (3, 0.0, math.inf, True, True),
        (np.float32(0.25), 0.0, 1.0, False, False),
        (np.array(0.25), 0.0, 1.0, False, False),
        (jnp.asarray(0.25), 0.0, 1.0, False, False),
        (jnp.asarray(2, dtype=jnp.int32), 0.0, math.inf, True, True),
    ],
)
def test_interval_accepts_values_inside(value, low, high, low_closed,
                                        high_closed):
  _checks.check_interval(
      "arg", value, low, high, low_closed=low_closed, high_closed=high_closed
  )


@pytest.mark.parametrize(
    "value, low, high, low_closed, high_closed, brackets",
    [
        (-0.1, 0.0, 1.0, True, True, ("[", "]")),
        (1.1, 0.0, 1.0, True, True, ("[", "]")),
        (0.0, 0.0, 1.0, False, True, ("(", "]")),
        (1.0, 0.0, 1.0, True, False, ("[", ")")),
        (np.float32(1.5), 0.0, 1.0, False, False, ("(", ")")),
        (jnp.asarray(-1.0), 0.0, math.inf, True, True, ("[", "]")),
    ],
)
def test_interval_rejects_values_outside_naming_interval(
    value, low, high, low_closed, high_closed, brackets):
  message = _raises_naming(
      _checks.check_interval, "b2", value, low, high,
      low_closed=low_closed, high_closed=high_closed,
  )
  left, right = brackets
  assert f"{left}{low}, {high}{right}" in message


@pytest.mark.parametrize(
    "value", [float("nan"), np.float32("nan"), True, False, "0.1", None,
              [0.1], np.zeros(2), 1 + 2j]
)
def test_interval_rejects_non_numbers_nan_and_non_scalars(value):
  # NaN compares False with everything, so without an explicit check it would
  # slip through any interval test written as `not (value < low)`.
  with pytest.raises(ValueError) as info:
    _checks.check_interval("eps", value, 0.0)
  assert "eps" in str(info.value)


def test_interval_lets_schedules_through():
  schedule = optax.linear_schedule(-1.0, -2.0, 10)  # would fail if evaluated
  _checks.check_interval("learning_rate", schedule, 0.0)
  _checks.check_positive("learning_rate", lambda count: -1.0)


def test_checks_let_tracers_through_under_jit():
  # inject_hyperparams feeds hyperparameters as traced arrays; a construction
  # check on them must neither raise nor force a host sync.
  @jax.jit
  def construct(value, count):
    _checks.check_interval("b1", value, 0.0, 1.0)
    _checks.check_positive("learning_rate", value)
    _checks.check_non_negative("weight_decay", value)
    _checks.check_int("warmup_steps", count)
    return value * 2

  assert float(construct(-3.0, 1)) == -6.0


@pytest.mark.parametrize("value", [0.0, 0, 1e-30, 7.5, 1e30])
def test_non_negative_accepts(value):
  _checks.check_non_negative("weight_decay", value)


def test_checks_accept_bfloat16_scalars():
  # optax.inject_hyperparams casts hyperparameters to the params' dtype by
  # default: with bfloat16 params, init re-checks a bfloat16 0-d array.
  _checks.check_non_negative("learning_rate", jnp.asarray(0.1, jnp.bfloat16))
  with pytest.raises(ValueError, match="learning_rate"):
    _checks.check_non_negative("learning_rate",
                               jnp.asarray(-0.1, jnp.bfloat16))


@pytest.mark.parametrize("value", [-1e-12, -1, -math.inf])
def test_non_negative_rejects(value):
  _raises_naming(_checks.check_non_negative, "weight_decay", value)


@pytest.mark.parametrize("value", [math.inf, -math.inf, np.float32("inf")])
def test_infinite_values_are_rejected(value):
  # An infinite learning rate or eps builds a run that is NaN from step one.
  with pytest.raises(ValueError, match="finite"):
    _checks.check_interval("learning_rate", value)


@pytest.mark.parametrize("value", [1e-30, 1, 0.5])
def test_positive_accepts(value):
  _checks.check_positive("gamma", value)


@pytest.mark.parametrize("value", [0.0, 0, -0.0, -2.0])
def test_positive_rejects_zero_and_negative(value):
  _raises_naming(_checks.check_positive, "gamma", value)


# check_int --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, minimum",
    [(0, 0), (5, 1), (np.int64(3), 0), (np.array(4), 2),
     (jnp.asarray(7, jnp.int32), 0)],
)
def test_int_accepts(value, minimum):
  _checks.check_int("warmup_steps", value, minimum)


@pytest.mark.parametrize("value", [2.0, 2.5, "3", None, True, np.array([1, 2]),
                                   np.float32(1.0)])
def test_int_rejects_non_integers(value):
  message = _raises_naming(_checks.check_int, "warmup_steps", value)
  assert "integer" in message


@pytest.mark.parametrize("value, minimum", [(-1, 0), (0, 1), (np.int32(2), 3)])
def test_int_rejects_below_minimum_naming_it(value, minimum):
  message = _raises_naming(_checks.check_int, "t_0", value, minimum)
  assert f">= {minimum}" in message


# check_choice -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["cos", "linear"])
def test_choice_accepts(value):
  _checks.check_choice("anneal_strategy", value, ["cos", "linear"])


@pytest.mark.parametrize("value", ["Cos", "cosine", "", None, 1])
def test_choice_rejects_naming_the_choices(value):
  message = _raises_naming(
      _checks.check_choice, "anneal_strategy", value, ("cos", "linear")
  )
  assert "'cos'" in message and "'linear'" in message


def test_choice_accepts_a_generator_of_choices():
  _checks.check_choice("mode", "exp_range",
                       (mode for mode in ("triangular", "exp_range")))


# check_float_leaves -----------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16,
                                   jnp.float8_e4m3fn])
def test_float_leaves_accepts_every_float_dtype(dtype):
  _checks.check_float_leaves("opt", {"w": jnp.ones(2, dtype), "s": 1.0,
                                     "frozen": optax.MaskedNode()})


def test_float_leaves_names_every_offending_leaf_by_path_and_dtype():
  tree = {"a": [jnp.ones(2), jnp.arange(2)], "b": {"flag": True},
          "c": jnp.ones(1, jnp.complex64), "d": np.zeros(1, np.uint8)}
  with pytest.raises(TypeError) as info:
    _checks.check_float_leaves("opt", tree, "gradient")
  message = str(info.value)
  assert message.startswith("opt: every gradient leaf must be a real "
                            "floating-point array; these are not:\n")
  for line in ("  ['a'][1]: int32\n", "  ['b']['flag']: bool\n",
               "  ['c']: complex64\n", "  ['d']: uint8\n"):
    assert line in message
  assert "['a'][0]" not in message
  assert "optax.masked" in message and "real and imaginary" in message


def test_float_leaves_names_a_bare_array_as_the_root():
  with pytest.raises(TypeError, match=r"\n  \(the root\): int32\n"):
    _checks.check_float_leaves("opt", jnp.arange(3))


# describe_mismatch and check_trees_match ------------------------------------


def test_mismatch_of_containers_only_prints_both_structures():
  # Same key paths and shapes (a list for a tuple): only the PyTreeDefs tell.
  state = (jnp.ones(2), jnp.ones(3))
  with pytest.raises(ValueError) as info:
    _checks.check_trees_match("opt", state, gradient=[jnp.ones(2),
                                                      jnp.ones(3)])
  message = str(info.value)
  assert "same key paths and shapes, other containers" in message
  assert "gradient: PyTreeDef([*, *])" in message
  assert "state: PyTreeDef((*, *))" in message


def test_mismatch_lists_missing_extra_and_reshaped_leaves():
  state = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
  given = {"w": jnp.ones((3, 2)), "c": jnp.ones(3)}
  lines = _checks.describe_mismatch("params", given, state).splitlines()
  assert lines == ["  only in the params: ['c'] (3,)",
                   "  only in the state: ['b'] (3,)",
                   "  shape at ['w']: params (3, 2), state (2, 3)"]
  assert _checks.describe_mismatch("params", state, state) == ""


def test_shapes_by_path_unwraps_nnx_variables_and_keeps_masked_nodes():
  nnx = pytest.importorskip("flax.nnx")
  wrapped = {"w": nnx.Param(jnp.ones(2))}
  assert _checks.shapes_by_path(wrapped) == {"['w'].value": (2,)}
  assert _checks.shapes_by_path(wrapped, unwrap=True) == {"['w']": (2,)}
  masked = {"w": optax.MaskedNode()}
  is_masked = lambda node: isinstance(node, optax.MaskedNode)  # noqa: E731
  assert _checks.shapes_by_path(masked, is_masked) == {"['w']": None}


# check_float_dtype and check_mask -------------------------------------------


@pytest.mark.parametrize("value", [None, jnp.float32, "bfloat16", np.float16])
def test_float_dtype_accepts(value):
  _checks.check_float_dtype("state_dtype", value)


@pytest.mark.parametrize("value", [jnp.int32, "bool", jnp.complex64, "f32x"])
def test_float_dtype_rejects(value):
  _raises_naming(_checks.check_float_dtype, "state_dtype", value)


def test_mask_may_be_a_prefix_or_a_callable():
  params = {"w": jnp.ones(2), "b": {"x": jnp.ones(1)}}
  _checks.check_mask("opt", None, params)
  _checks.check_mask("opt", {"w": True, "b": False}, params)
  _checks.check_mask("opt", lambda p: jax.tree.map(lambda _: True, p), params)
  with pytest.raises(ValueError, match=r"not covered by the mask: \['b'\]\['x'\]"):
    _checks.check_mask("opt", {"w": True, "b": {"y": True}}, params)


# check_number -----------------------------------------------------------------


@pytest.mark.parametrize("value", [0.9, 0, np.float32(0.5), jnp.asarray(2.0),
                                   jnp.asarray(3, jnp.int32), -1.5])
def test_number_accepts_real_scalars(value):
  _checks.check_number("b1", value)


@pytest.mark.parametrize("value", [True, "0.9", None, np.zeros(2),
                                   float("nan"), math.inf, 1j])
def test_number_rejects_what_is_no_real_finite_scalar(value):
  with pytest.raises(ValueError, match="b1"):
    _checks.check_number("b1", value)


SCHEDULES = [optax.linear_schedule(0.9, 0.99, 100),
             lambda count: 0.9,
             optax.constant_schedule(0.1)]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_number_given_a_schedule_shows_the_inject_hyperparams_route(schedule):
  with pytest.raises(ValueError) as info:
    _checks.check_number("b1", schedule, schedulable_via="optfree.lion")
  message = str(info.value)
  assert message.startswith("b1 must be a number, got a schedule")
  assert repr(schedule) in message
  assert "tx = optax.inject_hyperparams(optfree.lion)(..., b1=schedule)" in (
      message)


def test_number_names_the_factory_given_as_a_function():
  import optfree  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError) as info:
    _checks.check_number("weight_decay", optax.constant_schedule(0.1),
                         schedulable_via=optfree.schedule_free_adamw)
  assert ("optax.inject_hyperparams(optfree.schedule_free_adamw)(..., "
          "weight_decay=schedule)") in str(info.value)


def test_the_route_in_the_message_runs_and_follows_the_schedule():
  # What the message tells the user to write: optax.inject_hyperparams over
  # a factory whose b1 takes a number (here optax.adam) evaluates the
  # schedule at each count.
  b1 = optax.linear_schedule(0.5, 0.9, 4)
  with pytest.raises(ValueError) as info:
    _checks.check_number("b1", b1, schedulable_via=optax.adam)
  assert "optax.inject_hyperparams(optax.adam)(..., b1=schedule)" in str(
      info.value)
  tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.1, b1=b1)
  params = jnp.zeros(2)
  state = tx.init(params)
  seen = []
  for _ in range(3):
    _, state = tx.update(jnp.ones(2), state, params)
    seen.append(float(state.hyperparams["b1"]))
  np.testing.assert_allclose(seen, [b1(0), b1(1), b1(2)], rtol=1e-6)


def test_number_for_a_schedule_argument_says_how_to_combine_schedules():
  with pytest.raises(ValueError) as info:
    _checks.check_number("init_value", optax.constant_schedule(0.1))
  message = str(info.value)
  assert message.startswith("init_value must be a number, got a schedule")
  assert "lambda count: schedule_a(count) * schedule_b(count)" in message
  assert "optfree.sequential_schedule" in message


def test_number_lets_tracers_through_under_jit():
  @jax.jit
  def construct(value):
    _checks.check_number("b1", value, schedulable_via="optfree.lion")
    return value + 1

  assert float(construct(0.5)) == 1.5


# check_transformation ---------------------------------------------------------


def test_transformation_accepts_optimizers():
  _checks.check_transformation("wrap", "inner", optax.adam(1e-3))
  _checks.check_transformation(
      "wrap", "inner", optax.chain(optax.clip(1.0), optax.sgd(0.1)))


def test_transformation_given_a_factory_says_to_call_it():
  with pytest.raises(TypeError) as info:
    _checks.check_transformation("stochastic_rounding", "inner", optax.adam)
  message = str(info.value)
  assert message.startswith("stochastic_rounding: inner must be an optax "
                            "GradientTransformation")
  assert "got the function optax.adam" in message
  assert "stochastic_rounding(optax.adam(learning_rate=1e-3))" in message


@pytest.mark.parametrize("value", [None, 0.1, "adam"])
def test_transformation_names_what_it_got(value):
  with pytest.raises(TypeError, match=f"got {re.escape(repr(value))}"):
    _checks.check_transformation("wrap", "inner", value)


# reference_names --------------------------------------------------------------


def _toy_sgd(learning_rate: float = 1.0, *, b1: float = 0.9,
             weight_decay: float = 0.0) -> tuple:
  """A toy optimizer factory.

  Example:
    >>> _toy_sgd(0.5)
    (0.5, 0.9, 0.0)
  """
  return learning_rate, b1, weight_decay


TOY = _checks.reference_names(momentum="b1", lr="learning_rate",
                              foreach=None)(_toy_sgd)


def test_reference_name_gets_the_optfree_name():
  with pytest.raises(TypeError) as info:
    TOY(0.1, momentum=0.9)
  assert str(info.value) == (
      "_toy_sgd got momentum=0.9: optfree calls it b1 (see the porting "
      "table, docs/guides/porting.md)")


def test_every_reference_name_of_a_call_is_named_and_unknown_ones_say_so():
  with pytest.raises(TypeError) as info:
    TOY(lr=0.1, momentum=0.5, foreach=True)
  message = str(info.value)
  assert "lr=0.1: optfree calls it learning_rate" in message
  assert "momentum=0.5: optfree calls it b1" in message
  assert "foreach=True: optfree has no counterpart" in message


def test_reference_names_change_nothing_else():
  assert TOY(0.5, b1=0.8) == (0.5, 0.8, 0.0)
  # Python's own error for a name the table does not know.
  with pytest.raises(TypeError, match="unexpected keyword argument 'nesterov'"):
    TOY(nesterov=True)
  # A TypeError from inside the function is not rewritten.
  @_checks.reference_names(momentum="b1")
  def failing(b1=0.9):
    raise TypeError(f"inside, b1={b1}")
  with pytest.raises(TypeError, match="^inside, b1=0.9$"):
    failing()


def test_reference_names_keep_signature_docstring_and_doctest(monkeypatch):
  import doctest  # pylint: disable=g-import-not-at-top
  import inspect  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  assert inspect.signature(TOY) == inspect.signature(_toy_sgd)
  assert TOY.__doc__ == _toy_sgd.__doc__
  assert (TOY.__name__, TOY.__module__) == ("_toy_sgd", __name__)
  # The doctest finder (pytest --doctest-modules) still finds the example of
  # a decorated function in its module, as it finds an optimizer's.
  module = types.ModuleType("toy_optimizers")
  monkeypatch.setitem(sys.modules, module.__name__, module)
  exec(  # pylint: disable=exec-used
      "from optfree import _checks\n"
      "@_checks.reference_names(momentum='b1')\n"
      "def toy(b1=0.9):\n"
      "  \"\"\"Example:\n\n  >>> toy()\n  0.9\n  \"\"\"\n"
      "  return b1\n", module.__dict__)
  found = [test for test in doctest.DocTestFinder().find(module)
           if test.examples]
  assert [test.name for test in found] == ["toy_optimizers.toy"]
  assert doctest.DocTestRunner().run(found[0]).failed == 0


def test_reference_names_refuse_a_name_the_function_has():
  with pytest.raises(ValueError, match=r"\['b1'\] are parameters of _toy_sgd"):
    _checks.reference_names(b1="b1")(_toy_sgd)
