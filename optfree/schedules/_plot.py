"""Drawing schedules with matplotlib, an optional dependency imported on use."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

Schedules = Union[
    Callable[[Any], Any], Sequence[Callable[[Any], Any]], Mapping[str, Callable]
]


def _evaluate(schedule: Callable[[Any], Any], counts: np.ndarray) -> np.ndarray:
  """The schedule's value at each count, as one float array.

  A schedule is a function of one scalar count. optfree's accept an array of
  counts too, but optax's ``join_schedules`` (behind
  ``cosine_onecycle_schedule``, ``warmup_cosine_decay_schedule``, ...) does
  not, so the schedule is mapped over the counts with ``jax.vmap``; one that
  branches in Python on the count (not traceable) is called count by count.
  """
  try:
    values = jax.vmap(schedule)(jnp.asarray(counts))
  except TypeError:  # jax.errors.ConcretizationTypeError and its kind
    values = [schedule(int(count)) for count in counts]
  return np.asarray(values, dtype=float).reshape(counts.shape)


def plot(
    schedules: Schedules,
    steps: Union[int, Sequence[int], np.ndarray],
    ax: Any = None,
    *,
    title: str | None = None,
    **plot_kwargs: Any,
) -> Any:
  """Draws one or more schedules over a range of update counts.

  Args:
    schedules: a schedule (optfree's, optax's or any function of the update
      count), a sequence of schedules, or a mapping from a label to a
      schedule (the labels go into a legend).
    steps: the counts to evaluate: an int ``n`` means ``0, ..., n - 1``, or
      an explicit sequence of counts.
    ax: the matplotlib ``Axes`` to draw on; ``None`` draws on a new figure.
    title: the axes' title.
    **plot_kwargs: passed on to ``ax.plot`` for every schedule.

  Returns:
    The ``Axes`` drawn on.

  Raises:
    ImportError: if matplotlib is not installed.

  Example:
    >>> import matplotlib
    >>> matplotlib.use('Agg')
    >>> from optfree import schedules
    >>> ax = schedules.plot(
    ...     {'onecycle': schedules.onecycle_schedule(0.1, total_steps=100),
    ...      'cosine': schedules.cosine_annealing_schedule(0.1, t_max=50)},
    ...     steps=100)
    >>> [line.get_label() for line in ax.get_lines()]
    ['onecycle', 'cosine']

    optax's schedules are drawn the same way, e.g. against optfree's:

    >>> import optax
    >>> ax = schedules.plot(
    ...     {'optax': optax.cosine_onecycle_schedule(100, 0.1),
    ...      'optfree': schedules.onecycle_schedule(0.1, total_steps=100)},
    ...     steps=100)
    >>> [round(float(line.get_ydata().max()), 3) for line in ax.get_lines()]
    [0.1, 0.1]
  """
  try:
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(
        "optfree.schedules.plot needs matplotlib: pip install matplotlib"
        " (or pip install 'optfree[examples]')"
    ) from error
  if isinstance(schedules, Mapping):
    labelled: list[tuple[str | None, Callable[..., Any]]] = list(
        schedules.items())
  elif callable(schedules):
    labelled = [(None, schedules)]
  else:
    labelled = [(None, schedule) for schedule in schedules]
  counts = np.asarray(steps)
  if counts.ndim == 0:
    counts = np.arange(counts.item())
  if ax is None:
    _, ax = plt.subplots()
  for label, schedule in labelled:
    ax.plot(counts, _evaluate(schedule, counts), label=label, **plot_kwargs)
  if any(label is not None for label, _ in labelled):
    ax.legend()
  ax.set_xlabel("update count")
  if title is not None:
    ax.set_title(title)
  return ax
