"""The table of every optfree optimizer, shared by the cross-cutting tests.

Each entry gives a factory that takes keyword hyperparameters and returns an
``optax.GradientTransformation``, and keyword arguments that make a short run
move noticeably on a small problem. Tests that must hold for every optimizer
(composition, checkpoints, dtypes, faults) parametrize over ``OPTIMIZERS``.

The loss value. ScheduleFree+ computes its step size from the loss at the
params, ``update(grads, state, params, value=loss)``; every other optfree
optimizer accepts ``value=`` and ignores it. So the tests do what a generic
training loop does: they pass ``value=`` to every optimizer, the real loss
where the test has a loss function (``jax.value_and_grad``), and
:func:`stand_in_loss` of the params where its gradients are synthetic. Where
two runs are compared, both get the same value at each step.
``Entry.needs_value`` marks the optimizers for which it matters (a test that
cannot pass it, as linen's ``TrainState.apply_gradients``, must say so).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

import optfree


@dataclasses.dataclass(frozen=True)
class Entry:
  name: str
  factory: Callable[..., optax.GradientTransformation]
  kwargs: dict[str, Any]
  schedule_free: bool = False
  # update() needs value=, the loss at the params (ScheduleFree+).
  needs_value: bool = False
  # Per-element work only. ScheduleFree+'s step size is a sum over all
  # leaves: a NaN element reaches every update, and a sharded step has
  # scalar all-reduces.
  elementwise: bool = True

  def make(self, **overrides: Any) -> optax.GradientTransformation:
    return self.factory(**{**self.kwargs, **overrides})


def _schedule_free_over_adam(
    learning_rate=1e-2,
    *,
    b1=0.9,
    weight_lr_power=2.0,
    r=0.0,
    weight_decay_at_y=0.0,
    state_dtype=None,
    rounding="nearest",
    seed=0,
):
  # The wrapper's base must produce the z-step; Adam without momentum does.
  # Explicit keywords, so that optax.inject_hyperparams can inject each one.
  return optfree.schedule_free(
      optax.adam(learning_rate, b1=0.0),
      learning_rate,
      b1=b1,
      weight_lr_power=weight_lr_power,
      r=r,
      weight_decay_at_y=weight_decay_at_y,
      state_dtype=state_dtype,
      rounding=rounding,
      seed=seed,
  )


OPTIMIZERS = (
    Entry("schedule_free_sgd", optfree.schedule_free_sgd,
          dict(learning_rate=0.1, warmup_steps=2), schedule_free=True),
    Entry("schedule_free_adamw", optfree.schedule_free_adamw,
          dict(learning_rate=1e-2, warmup_steps=2, weight_decay=1e-3),
          schedule_free=True),
    Entry("schedule_free_radam", optfree.schedule_free_radam,
          dict(learning_rate=1e-2, weight_decay=1e-3), schedule_free=True),
    Entry("schedule_free_wrapper", _schedule_free_over_adam,
          dict(learning_rate=1e-2), schedule_free=True),
    Entry("adabound", optfree.adabound,
          dict(learning_rate=1e-2, final_lr=0.1, weight_decay=1e-3)),
    Entry("amsbound", optfree.amsbound,
          dict(learning_rate=1e-2, final_lr=0.1)),
    Entry("adaboundw", optfree.adaboundw,
          dict(learning_rate=1e-2, final_lr=0.1, weight_decay=1e-3)),
    Entry("lion", optfree.lion, dict(learning_rate=1e-3, weight_decay=1e-2)),
    # Learning-rate-free: learning_rate multiplies the Polyak step; 0.1 keeps
    # it stable after test_composition's clip (a clipped gradient has a
    # small L1 norm, which the step divides by).
    Entry("schedule_free_plus", optfree.schedule_free_plus,
          dict(learning_rate=0.1, warmup_steps=2, weight_decay=1.0,
               polyak_b=0.5),
          schedule_free=True, needs_value=True, elementwise=False),
)

OPTIMIZER_IDS = tuple(entry.name for entry in OPTIMIZERS)


def small_params():
  """A small nested params tree: a matrix, a vector and a scalar leaf."""
  return {
      "dense": {
          "kernel": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(
              3, 4),
          "bias": jnp.full((4,), 0.25, jnp.float32),
      },
      "scale": jnp.asarray(0.5, jnp.float32),
  }


def stand_in_loss(params):
  """A loss-like value of the params, for tests whose gradients are synthetic.

  Half the mean square of each leaf, summed over the leaves, in float32 or
  wider: positive, and a deterministic function of the params, so that a run
  resumed from a checkpoint (or replayed by hand) gets the same values.
  """
  return sum(
      0.5 * jnp.mean(jnp.square(
          leaf.astype(jnp.promote_types(leaf.dtype, jnp.float32))))
      for leaf in jax.tree.leaves(params))


# The bare scale_by_* transformations: public too, but no params needed.
SCALE_BY = (
    Entry("scale_by_adabound", optfree.scale_by_adabound,
          dict(learning_rate=1e-2, final_lr=0.1)),
    Entry("scale_by_lion", optfree.scale_by_lion, dict(b1=0.9, b2=0.99)),
)
# Every public transformation, with whether its update needs the params.
PUBLIC = tuple((entry, True) for entry in OPTIMIZERS) + tuple(
    (entry, False) for entry in SCALE_BY)
PUBLIC_IDS = tuple(entry.name for entry, _ in PUBLIC)
