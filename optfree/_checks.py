"""Validation of hyperparameters, shared by every optimizer and schedule.

Each check raises ``ValueError`` naming the argument and the value it got, at
construction time. Values that cannot be inspected without tracing are let
through: a callable (an optax schedule) and a JAX tracer (a hyperparameter that
``optax.inject_hyperparams`` feeds in under ``jit``). Concrete arrays are checked
like Python numbers.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np


def _is_unchecked(value: Any) -> bool:
  return callable(value) or isinstance(value, jax.core.Tracer)


def _as_float(name: str, value: Any) -> float:
  if isinstance(value, bool):
    raise ValueError(f"{name} must be a number, got {value!r}")
  try:
    array = np.asarray(value)
  except Exception as error:  # pragma: no cover - defensive, message matters
    raise ValueError(f"{name} must be a number, got {value!r}") from error
  # jnp.issubdtype: numpy's does not count bfloat16 as floating.
  real = jnp.issubdtype(array.dtype, jnp.integer) or jnp.issubdtype(
      array.dtype, jnp.floating
  )
  if array.shape != () or not real:
    raise ValueError(f"{name} must be a real scalar number, got {value!r}")
  result = float(array)
  if not math.isfinite(result):
    raise ValueError(f"{name} must be finite, got {value!r}")
  return result


def check_interval(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_closed: bool = True,
    high_closed: bool = True,
) -> None:
  """Raises ValueError unless ``value`` lies in the given interval.

  Args:
    name: the argument's name, used in the message.
    value: a number, a 0-d array, a schedule or a tracer (the last two pass).
    low: lower end of the interval.
    high: upper end of the interval.
    low_closed: whether ``low`` itself is allowed.
    high_closed: whether ``high`` itself is allowed.
  """
  if _is_unchecked(value):
    return
  number = _as_float(name, value)
  above = number >= low if low_closed else number > low
  below = number <= high if high_closed else number < high
  if not (above and below):
    left = "[" if low_closed else "("
    right = "]" if high_closed else ")"
    raise ValueError(
        f"{name} must be in {left}{low}, {high}{right}, got {value!r}"
    )


def check_non_negative(name: str, value: Any) -> None:
  """Raises ValueError if ``value`` < 0 (schedules and tracers pass)."""
  check_interval(name, value, 0.0)


def check_positive(name: str, value: Any) -> None:
  """Raises ValueError if ``value`` <= 0 (schedules and tracers pass)."""
  check_interval(name, value, 0.0, low_closed=False)


def check_int(name: str, value: Any, minimum: int = 0) -> None:
  """Raises ValueError unless ``value`` is an integer >= ``minimum``."""
  if isinstance(value, jax.core.Tracer):
    return
  is_integer = isinstance(value, numbers.Integral) and not isinstance(
      value, bool
  )
  if not is_integer:
    array = np.asarray(value) if not isinstance(value, bool) else None
    is_integer = (
        array is not None
        and array.shape == ()
        and np.issubdtype(array.dtype, np.integer)
    )
  if not is_integer:
    raise ValueError(f"{name} must be an integer, got {value!r}")
  if int(value) < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
  """Raises ValueError unless ``value`` is one of ``choices``."""
  choices = tuple(choices)
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_trees_match(name: str, state_tree: Any, **trees: Any) -> None:
  """Raises ValueError unless every tree has the structure and leaf shapes of
  ``state_tree`` (the param-shaped part of an optimizer state).

  Shapes are compared exactly: a leaf that would merely broadcast against the
  state is an error, since it would silently corrupt the state.

  Args:
    name: the optimizer's name, used in the message.
    state_tree: a param-shaped tree from the optimizer state.
    **trees: the trees to check, by the name used in the message
      (``gradient=grads``, ``params=params``); ``None`` values are skipped.
  """
  state_structure = jax.tree.structure(state_tree)
  state_shapes = [np.shape(leaf) for leaf in jax.tree.leaves(state_tree)]
  for what, tree in trees.items():
    if tree is None:
      continue
    structure = jax.tree.structure(tree)
    if structure != state_structure:
      raise ValueError(
          f"{name}: the {what} tree does not match the optimizer state "
          "(which was initialised from params with another structure).\n"
          f"{what}: {structure}\nstate: {state_structure}"
      )
    shapes = [np.shape(leaf) for leaf in jax.tree.leaves(tree)]
    if shapes != state_shapes:
      raise ValueError(
          f"{name}: the {what} leaf shapes {shapes} do not match the "
          f"optimizer state's {state_shapes}."
      )
