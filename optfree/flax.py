"""Flax helpers for Schedule-Free evaluation and BatchNorm statistics.

Schedule-Free training holds three sequences: the model's parameters are ``y``
(where gradients are taken), ``z`` lives in the optimizer state, and the point
to evaluate at is ``x``. PyTorch's ``schedulefree`` swaps ``x`` into the model
with ``optimizer.eval()`` and back with ``optimizer.train()``; the helpers here
do the same functionally, for linen ``TrainState`` and for NNX models with an
``nnx.Optimizer``.

BatchNorm running statistics collected during training describe activations at
``y``, not at ``x``; :func:`recompute_batch_stats` recomputes them at the
evaluation point from a few batches (``torch.optim.swa_utils.update_bn``).

``import optfree`` does not import this module, so optfree works without Flax.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterable, Iterator

from flax import nnx
import jax
import jax.numpy as jnp
import optax

import optfree


def eval_params(train_state: Any) -> optax.Params:
  """Returns the Schedule-Free evaluation point ``x`` of a linen TrainState.

  The linen counterpart of PyTorch's ``optimizer.eval()``:
  ``train_state.params`` is ``y``, and the optimizer state holds what forms
  ``x`` wherever the Schedule-Free state sits in ``train_state.tx`` (see
  :func:`optfree.eval_params`).

  Args:
    train_state: a ``flax.training.train_state.TrainState`` (or anything with
      ``params`` and ``opt_state``) whose ``tx`` contains a Schedule-Free
      optimizer.

  Returns:
    The parameters at ``x``, with the structure of ``train_state.params``.

  Raises:
    ValueError: when ``train_state.opt_state`` holds no Schedule-Free state.

  Example:
    >>> import jax.numpy as jnp
    >>> import optfree, optfree.flax
    >>> from flax.training import train_state
    >>> state = train_state.TrainState.create(
    ...     apply_fn=lambda variables, x: variables['params']['w'] * x,
    ...     params={'w': jnp.array([1.0, -2.0])},
    ...     tx=optfree.schedule_free_sgd(learning_rate=0.5))
    >>> for _ in range(2):
    ...   state = state.apply_gradients(grads={'w': jnp.array([1.0, 1.0])})
    >>> x = optfree.flax.eval_params(state)
    >>> print([f"{v:.3f}" for v in x['w'].tolist()])  # x
    ['0.250', '-2.750']
    >>> print([f"{v:.3f}" for v in state.params['w'].tolist()])  # y
    ['0.225', '-2.775']
  """
  return optfree.eval_params(train_state.opt_state, train_state.params)


def _nnx_eval_state(model: nnx.Module, optimizer: nnx.Optimizer) -> Any:
  params = nnx.as_pure(nnx.state(model, optimizer.wrt, graph=optimizer.graph))
  return optfree.eval_params(nnx.as_pure(optimizer.opt_state), params)


def eval_model(model: nnx.Module, optimizer: nnx.Optimizer) -> nnx.Module:
  """Returns a copy of an NNX model whose parameters are at ``x``.

  The functional form of PyTorch's ``optimizer.eval()``: ``model`` keeps its
  training parameters ``y``; the copy holds the Schedule-Free evaluation point
  ``x`` computed from ``optimizer.opt_state``. Other variables (BatchNorm
  statistics, RNG state) are copied as they are; the copy shares no variable
  with ``model``, so :func:`recompute_batch_stats` on it leaves the training
  model untouched. Arrays are immutable, so only ``x`` takes new memory.

  Args:
    model: an NNX module trained by ``optimizer``.
    optimizer: the ``nnx.Optimizer(model, tx, wrt=...)`` whose ``tx`` contains
      a Schedule-Free optimizer.

  Returns:
    A new module with the parameters selected by ``optimizer.wrt`` at ``x``.

  Raises:
    ValueError: when the optimizer state holds no Schedule-Free state.

  Example:
    >>> import jax.numpy as jnp
    >>> import optfree, optfree.flax
    >>> from flax import nnx
    >>> model = nnx.Linear(2, 1, use_bias=False, rngs=nnx.Rngs(0))
    >>> model.kernel[...] = jnp.array([[1.0], [-2.0]])
    >>> optimizer = nnx.Optimizer(
    ...     model, optfree.schedule_free_sgd(learning_rate=0.5), wrt=nnx.Param)
    >>> for _ in range(2):
    ...   grads = nnx.grad(lambda m: m(jnp.ones(2))[0])(model)  # all ones
    ...   _ = optimizer.update(model, grads)
    >>> model_at_x = optfree.flax.eval_model(model, optimizer)
    >>> print([f"{v:.3f}" for v in model_at_x.kernel[...].ravel().tolist()])
    ['0.250', '-2.750']
    >>> print([f"{v:.3f}" for v in model.kernel[...].ravel().tolist()])  # y
    ['0.225', '-2.775']
  """
  model_at_x = nnx.clone(model)
  nnx.update(model_at_x, _nnx_eval_state(model, optimizer))
  return model_at_x


@contextlib.contextmanager
def evaluating(
    model: nnx.Module, optimizer: nnx.Optimizer
) -> Iterator[nnx.Module]:
  """Context in which an NNX model's parameters are at ``x``, restored after.

  ``optimizer.eval()`` on entry and ``optimizer.train()`` on exit, done in
  place without a copy of the model. The training parameters ``y`` are put
  back on exit, also when the body raises; do not update the model inside.
  Variables other than the parameters (BatchNorm statistics) are not restored,
  so statistics recomputed inside stay.

  Args:
    model: an NNX module trained by ``optimizer``.
    optimizer: the ``nnx.Optimizer`` whose ``tx`` contains a Schedule-Free
      optimizer.

  Yields:
    ``model`` itself, its parameters selected by ``optimizer.wrt`` at ``x``.

  Example:
    >>> import jax.numpy as jnp
    >>> import optfree, optfree.flax
    >>> from flax import nnx
    >>> model = nnx.Linear(2, 1, use_bias=False, rngs=nnx.Rngs(0))
    >>> model.kernel[...] = jnp.array([[1.0], [-2.0]])
    >>> optimizer = nnx.Optimizer(
    ...     model, optfree.schedule_free_sgd(learning_rate=0.5), wrt=nnx.Param)
    >>> for _ in range(2):
    ...   grads = nnx.grad(lambda m: m(jnp.ones(2))[0])(model)  # all ones
    ...   _ = optimizer.update(model, grads)
    >>> with optfree.flax.evaluating(model, optimizer):
    ...   print(f"{float(model(jnp.array([1.0, 0.0]))[0]):.3f}")  # at x
    0.250
    >>> print(f"{float(model(jnp.array([1.0, 0.0]))[0]):.3f}")  # at y again
    0.225
  """
  training_params = nnx.as_pure(
      nnx.state(model, optimizer.wrt, graph=optimizer.graph)
  )
  nnx.update(model, _nnx_eval_state(model, optimizer))
  try:
    yield model
  finally:
    nnx.update(model, training_params)


def _call_model(model: nnx.Module, batch: Any) -> Any:
  return model(batch)


@nnx.jit(static_argnums=0)
def _nnx_batch_statistics(
    forward: Callable[[nnx.Module, Any], Any], model: nnx.Module, batch: Any
) -> Any:
  forward(model, batch)
  return nnx.as_pure(nnx.state(model, nnx.BatchStat))


def _describe(leaf: Any) -> str:
  shape = getattr(leaf, "shape", None)
  dtype = getattr(leaf, "dtype", None)
  if shape is None or dtype is None:
    return type(leaf).__name__
  return f"{tuple(shape)} {dtype}"


def _batch_of_pairs_error(batch: Any, error: Exception, nnx_form: bool
                          ) -> TypeError:
  """The error for a batch that holds more than the model's inputs."""
  if isinstance(batch, dict):
    what = f"a dict with keys {', '.join(map(repr, batch))}"
    key = next(iter(batch), "inputs")
    inputs = f"(batch[{key!r}] for batch in batches)"
    select = f"batch[{key!r}]"
  else:
    what = (f"a {type(batch).__name__} of {len(batch)}: "
            + ", ".join(_describe(leaf) for leaf in batch))
    inputs = "(x for x, _ in batches)"
    select = "batch[0]"
  how = f"pass the inputs alone: recompute_batch_stats(model, {inputs}"
  how += ")" if nnx_form else ", variables=..., **apply_kwargs)"
  if nnx_form:
    how += f", or say how to run the model: forward=lambda model, batch: " \
           f"model({select})"
  return TypeError(
      f"recompute_batch_stats: the model failed on a batch that is {what} "
      f"({type(error).__name__}: {error}). Each batch is passed to the model "
      "as it is, so batches must yield the model's inputs only, not "
      f"(inputs, labels) pairs: {how}.")


def _run_on_batch(run: Callable[[], Any], batch: Any, nnx_form: bool) -> Any:
  """``run()``; a failure on a tuple, list or dict batch says what to pass."""
  if not isinstance(batch, (tuple, list, dict)):
    return run()
  try:
    return run()
  except Exception as error:  # pylint: disable=broad-except
    raise _batch_of_pairs_error(batch, error, nnx_form) from error


def _not_recomputed(paths: Iterable[str], how: str) -> ValueError:
  return ValueError(
      "recompute_batch_stats: the statistics at "
      f"{', '.join(paths)} were not recomputed: the forward pass did not "
      f"update them. {how}"
  )


def _failing_paths(check: Callable[..., Any], *trees: Any) -> list[str]:
  """Paths of the leaves (of the first tree) where ``check`` is false."""
  passed = jax.tree.map(lambda *leaves: bool(check(*leaves)), *trees)
  return [
      jax.tree_util.keystr(path)
      for path, ok in jax.tree_util.tree_leaves_with_path(passed)
      if not ok
  ]


def _recompute_nnx(
    model: nnx.Module,
    batches: Iterable[Any],
    forward: Callable[[nnx.Module, Any], Any],
) -> None:
  # With forward given, what a batch holds is the caller's business.
  explain = forward is _call_model
  batch_norm_paths = frozenset(
      path for path, module in nnx.iter_modules(model)
      if isinstance(module, nnx.BatchNorm)
  )
  if not batch_norm_paths:
    raise ValueError("recompute_batch_stats: the model has no nnx.BatchNorm.")

  def of_batch_norms(state: Any) -> Any:
    return nnx.filter_state(state, lambda path, _: path[:-1] in batch_norm_paths)

  before = nnx.as_pure(nnx.state(model, nnx.BatchStat))
  # With momentum 0 each BatchNorm stores exactly the current batch's mean and
  # variance; averaging them over the batches weights every batch equally.
  # The view shares the model's variables, so its passes write into them.
  view = nnx.with_attributes(
      model, only=nnx.BatchNorm, use_running_average=False, momentum=0.0
  )

  def statistics_from(fill: Callable[[Any], Any], batch: Any) -> Any:
    nnx.update(model, jax.tree.map(fill, of_batch_norms(before)))
    run = lambda: _nnx_batch_statistics(forward, view, batch)  # noqa: E731
    return _run_on_batch(run, batch, nnx_form=True) if explain else run()

  total, count = None, 0
  try:
    for batch in batches:
      statistics = statistics_from(jnp.zeros_like, batch)
      if total is None:
        # A BatchNorm that forward does not run in training mode (not called,
        # or called with use_running_average=True) returns what it held, so
        # a second pass from ones finds it out.
        unwritten = _failing_paths(
            functools.partial(jnp.array_equal, equal_nan=True),
            of_batch_norms(statistics),
            of_batch_norms(statistics_from(jnp.ones_like, batch)),
        )
        if unwritten:
          raise _not_recomputed(unwritten, (
              "forward(model, batch) must call every nnx.BatchNorm, without "
              "use_running_average=True."))
        total = statistics
      else:
        total = jax.tree.map(jnp.add, total, statistics)
      count += 1
  finally:
    nnx.update(model, before)
  if count == 0:
    raise ValueError("recompute_batch_stats: batches is empty.")
  # Statistics of other modules (a custom BatchStat) are left as they were.
  nnx.update(model, jax.tree.map(lambda s: s / count, of_batch_norms(total)))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _linen_batch_statistics(
    apply_fn: Callable[..., Any],
    apply_kwargs: tuple[tuple[str, Any], ...],
    variables: Any,
    batch_stats: Any,
    batch: Any,
) -> Any:
  _, mutated = apply_fn(
      {**variables, "batch_stats": batch_stats}, batch,
      mutable=["batch_stats"], **dict(apply_kwargs),
  )
  return mutated["batch_stats"]


def _recompute_linen(
    apply_fn: Callable[..., Any],
    variables: Any,
    batches: Iterable[Any],
    apply_kwargs: dict[str, Any],
) -> Any:
  if variables is None or "batch_stats" not in variables:
    raise ValueError(
        "recompute_batch_stats: for a linen model pass variables="
        "{'params': ..., 'batch_stats': ...}."
    )
  stale = variables["batch_stats"]
  other = {k: v for k, v in variables.items() if k != "batch_stats"}
  compiled = functools.partial(
      _linen_batch_statistics, apply_fn, tuple(sorted(apply_kwargs.items())),
      other,
  )

  def statistics(running: Any, batch: Any) -> Any:
    return _run_on_batch(lambda: compiled(running, batch), batch,
                         nnx_form=False)
  # A linen BatchNorm updates ra <- m * ra + (1 - m) * stat with its own
  # momentum m. From ra = 0 it returns (1 - m) * stat; from ra = R it returns
  # m * R + (1 - m) * stat, which gives m per leaf without access to the
  # module's attributes. R of the size of (1 - m) * stat keeps the rounding
  # of the second pass at float precision in m (from ra = 1, statistics of
  # 1e5 lost three digits).
  def new_weight(decayed: Any, batch: Any) -> Any:
    scale = jax.tree.map(lambda d: jnp.maximum(jnp.abs(d), 1), decayed)
    from_scale = statistics(scale, batch)
    return jax.tree.map(
        lambda d, r, s: 1 - (r - d) / s, decayed, from_scale, scale
    )

  zeros = jax.tree.map(jnp.zeros_like, stale)
  total, weight, count = None, None, 0
  for batch in batches:
    decayed = statistics(zeros, batch)
    if total is None:
      weight = new_weight(decayed, batch)
      # 1 - m is 0 where apply_fn left the statistics as they were (BatchNorm
      # in evaluation mode): dividing by it would give NaN.
      unwritten = _failing_paths(lambda w: jnp.all(w > 0), weight)
      if unwritten:
        raise _not_recomputed(unwritten, (
            "Pass the keyword argument of apply_fn that puts BatchNorm in "
            "training mode, e.g. recompute_batch_stats(state.apply_fn, "
            "batches, variables=..., train=True); each leaf must be updated "
            "as m * ra + (1 - m) * stat with m < 1."))
      total = decayed
    else:
      total = jax.tree.map(jnp.add, total, decayed)
    count += 1
  if count == 0:
    raise ValueError("recompute_batch_stats: batches is empty.")
  return jax.tree.map(lambda t, w: t / (count * w), total, weight)


def recompute_batch_stats(
    model: Any,
    batches: Iterable[Any],
    *,
    variables: Any = None,
    forward: Callable[[nnx.Module, Any], Any] | None = None,
    **apply_kwargs: Any,
) -> Any:
  r"""Recomputes BatchNorm statistics at the current parameters.

  Each BatchNorm's running mean and variance become the equal-weight average
  of the per-batch mean and variance over ``batches``, computed in training
  mode at the given parameters (PyTorch's ``swa_utils.update_bn``, which
  Schedule-Free's documentation recommends before evaluating at ``x``):

  .. math::
    \mu = \frac{1}{K} \sum_{k=1}^{K} \mathrm{mean}(h_k), \qquad
    \sigma^2 = \frac{1}{K} \sum_{k=1}^{K} \mathrm{var}(h_k)

  where :math:`h_k` is the BatchNorm input on batch :math:`k`. Use it on the
  model at ``x`` (:func:`eval_model`, :func:`eval_params`), whose activations
  differ from those at ``y`` where training collected the statistics.

  Two forms:

  - NNX: ``recompute_batch_stats(model, batches, forward=None)`` updates every
    ``nnx.BatchNorm`` of ``model`` in place and returns ``None``.
    ``forward(model, batch)`` runs the model on a batch (default
    ``model(batch)``); BatchNorm layers run in training mode with momentum 0
    during the pass, other layers in whatever mode ``model`` is in.
  - linen: ``recompute_batch_stats(apply_fn, batches, variables=...,
    **apply_kwargs)`` with ``apply_fn`` a linen module's ``apply`` (e.g.
    ``state.apply_fn``) and ``variables`` holding ``'params'`` (at ``x``) and
    the stale ``'batch_stats'``; calls ``apply_fn(variables, batch,
    mutable=['batch_stats'], **apply_kwargs)``, so pass what puts BatchNorm in
    training mode (e.g. ``train=True``). Returns the new ``batch_stats``.
    Every leaf of ``batch_stats`` must be updated as ``m * ra + (1 - m) *
    stat`` with ``m < 1``, as ``flax.linen.BatchNorm`` does.

  Args:
    model: an ``nnx.Module``, or a linen ``apply`` function.
    batches: a finite iterable of model inputs, all of one shape (a few
      training batches are enough). Each is passed to the model as it is:
      from ``(inputs, labels)`` pairs pass ``(x for x, _ in batches)`` (or,
      NNX, ``forward=lambda model, batch: model(batch[0])``).
    variables: linen only: the variables dict with ``'batch_stats'``.
    forward: NNX only: how to run the model on one batch.
    **apply_kwargs: linen only: keyword arguments of ``apply_fn``; they must
      be hashable (they are static under ``jit``).

  Returns:
    ``None`` for NNX (the model is updated), the new ``batch_stats`` for linen.

  Raises:
    TypeError: when the model fails on a batch that is a tuple, list or dict
      (an ``(inputs, labels)`` pair, most likely), saying what to pass.
    ValueError: when ``batches`` is empty, the NNX model has no BatchNorm, the
      linen ``variables`` has no ``'batch_stats'``, or some statistics were
      not recomputed because the pass did not run their BatchNorm in training
      mode (linen: ``apply_kwargs`` lack e.g. ``train=True``; NNX: ``forward``
      does not call the BatchNorm, or calls it with
      ``use_running_average=True``). The error names their paths.

  References:
    Defazio et al., `The Road Less Scheduled
    <https://arxiv.org/abs/2405.15682>`_, 2024 (and the ``schedulefree``
    README on BatchNorm); Izmailov et al., `Averaging Weights Leads to Wider
    Optima and Better Generalization <https://arxiv.org/abs/1803.05407>`_, 2018.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import optfree.flax
    >>> from flax import nnx
    >>> model = nnx.BatchNorm(2, rngs=nnx.Rngs(0))
    >>> batches = [jnp.array([[0.0, 1.0], [2.0, 3.0]]),
    ...            jnp.array([[4.0, 1.0], [6.0, 3.0]])]
    >>> optfree.flax.recompute_batch_stats(model, batches)
    >>> print(model.mean[...].tolist(), model.var[...].tolist())
    [3.0, 2.0] [1.0, 1.0]
    >>> from flax import linen as nn
    >>> module = nn.BatchNorm(use_running_average=False)
    >>> variables = module.init(jax.random.key(0), batches[0])
    >>> stats = optfree.flax.recompute_batch_stats(
    ...     module.apply, batches, variables=variables)
    >>> print([f"{v:.3f}" for v in stats['mean'].tolist()],
    ...       [f"{v:.3f}" for v in stats['var'].tolist()])
    ['3.000', '2.000'] ['1.000', '1.000']
  """
  if isinstance(model, nnx.Module):
    if variables is not None or apply_kwargs:
      raise ValueError(
          "recompute_batch_stats: variables and apply keyword arguments are "
          "for linen; an NNX model carries its own variables."
      )
    _recompute_nnx(model, batches, forward or _call_model)
    return None
  if forward is not None:
    raise ValueError(
        "recompute_batch_stats: forward is for NNX models; for linen pass "
        "apply keyword arguments."
    )
  return _recompute_linen(model, variables, batches, apply_kwargs)
