"""Writes schedule_free_algoperf.npz: golden trajectories of AlgoPerf SF-AdamW.

Run from the repository root (needs only numpy):

    python tests/reference/gen_schedule_free_algoperf.py

The Schedule-Free AdamW that won the self-tuning track of AlgoPerf v0.5 is
not a package: this file holds a numpy float64 port of its update rule,
written from the published source and not copied from it: method ``step`` of
class ``AdamWScheduleFree`` in
``submissions/self_tuning/schedule_free_adamw/submission.py`` of the public
repository mlcommons/submissions_algorithms, as read at commit
2f67ea5e3ec9a9b8f5a6b82ac8258fc610c96e84, with the hyperparameters of that
file's ``HPARAMS`` and ``init_optimizer_state``.

The submission's params hold x between steps. A step extrapolates them to
y = lerp(x, z, 1 - b1), takes the gradient there (the closure), and with
lr = max(lr * min((k + 1) / warmup_steps, 1), eps), lr_max its running
maximum (from 0), w = (k + 1)^r lr_max^weight_lr_power, c = w / sum(w),
s = lr * sqrt(1 - b2^(k + 1)), per param: undoes the extrapolation
(x = lerp(y, z, 1 - 1 / b1)), v = b2 v + (1 - b2) g^2,
z -= s g / (sqrt(v) + eps) (no bias correction in the denominator: it is in
the step size s), z -= s * weight_decay * x (decay at x, not at y), and
x = lerp(x, z, c). The port spells each torch operation as torch evaluates
it (``lerp_`` by its two-branch formula, ``addcdiv_`` as a + s * (b / c)).
The submission keeps ``exp_avg_sq`` in bfloat16; the port keeps it in
float64, as optfree does in a float64 run. Its ``reset`` (after a detected
divergence) has no counterpart here.

Two switches of the port give the combinations between that optimizer and
PyPI schedulefree 1.4.1's ``AdamWScheduleFree`` (the same switches as
optfree's ``schedule_free_adamw``): ``weight_decay_at``, ``"x"`` (the
submission) or ``"y"`` (z -= s * weight_decay * y, y the point of the
gradient: 1.4.1); and ``bias_correction``, ``"step_size"`` (the submission)
or ``"denominator"`` (s = lr and z -= s g / (sqrt(v / (1 - b2^(k + 1))) +
eps): 1.4.1). With ``"y"`` and ``"denominator"`` the port is 1.4.1's
optimizer; ``main`` checks that against the torch-written cases of
schedule_free.npz before writing anything.

Problem: the three params (shapes (5,), (2, 3), ()) and noisy quadratic
g_k(y) = h * (y - target) + noise[k] of gen_schedule_free.py (same seed,
same arrays). The file holds the problem and per case: ``config`` (JSON:
``optfree``, every keyword argument of ``optfree.schedule_free_adamw``
explicit; ``reference``, the port's arguments in the submission's names;
``scheduled``), ``lr`` (the group's learning rate at each step, before the
warmup factor, when scheduled), ``y`` after every step (where the next
gradient is taken: optfree's params) and ``x`` after every step (the
submission's params: optfree's ``eval_params``), flattened leaves
concatenated.
"""

import json
import math
import os
import platform

import numpy as np

from schedule_free_problem import SHAPES, STEPS  # noqa: F401
from schedule_free_problem import problem as _problem
from schedule_free_problem import split as _split

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "schedule_free_algoperf.npz")

# The submission's HPARAMS (the entries its optimizer reads).
HPARAMS = dict(learning_rate=0.0025, one_minus_beta1=0.1,
               beta2=0.9955159689799007, weight_decay=0.08121616522670176,
               warmup_factor=0.02, weight_lr_power=2, r=0.75)
# A workload's step_hint, which the warmup length is a fraction of.
STEP_HINT = 800


def _lr_factor(k):
  # gen_schedule_free.py's: rises, falls below its earlier peak, then rises
  # above it (lr_max is a running maximum).
  return 0.6 + 0.4 * math.sin(0.09 * k) + 0.004 * k


# --- The port -------------------------------------------------------------


def _lerp(start, end, weight):
  """torch.lerp: exact at both ends, by the branch on |weight| < 0.5."""
  if abs(weight) < 0.5:
    return start + weight * (end - start)
  return end - (end - start) * (1 - weight)


def _new_optimizer(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   weight_lr_power=2, warmup_steps=0, r=0.0,
                   weight_decay_at="x", bias_correction="step_size"):
  """The (one) param group and the empty per-param state.

  The defaults are the submission constructor's; the two switches default
  to the submission's behaviour (see the module docstring).
  """
  assert weight_decay_at in ("x", "y"), weight_decay_at
  assert bias_correction in ("step_size", "denominator"), bias_correction
  group = dict(lr=lr, betas=betas, eps=eps, r=r, k=0, weight_sum=0.0,
               lr_max=0.0, warmup_steps=warmup_steps,
               weight_lr_power=weight_lr_power, weight_decay=weight_decay,
               weight_decay_at=weight_decay_at,
               bias_correction=bias_correction)
  return group, {}


def _step(group, state, params, gradient_at):
  """One step; updates group, state and params (x) in place.

  Args:
    group: the param group of ``_new_optimizer``.
    state: per-param dict of z and exp_avg_sq, filled on the first step.
    params: list of float64 arrays holding x, as the submission's params.
    gradient_at: the closure: the list of gradients at a list of params.
  """
  beta1, beta2 = group["betas"]
  for i, p in enumerate(params):
    if i not in state:
      state[i] = dict(z=p.copy(), exp_avg_sq=np.zeros_like(p))
    params[i] = _lerp(p, state[i]["z"], 1 - beta1)
  grads = gradient_at(params)
  ys = [p.copy() for p in params]

  eps = group["eps"]
  k = group["k"]
  warmup_steps = group["warmup_steps"]
  sched = (k + 1) / warmup_steps if k < warmup_steps else 1.0
  annealed_lr = group["lr"] * sched
  lr = max(annealed_lr, eps)
  decay = group["weight_decay"]
  weight_lr_power = group["weight_lr_power"]
  r = group["r"]
  lr_max = group["lr_max"] = max(lr, group["lr_max"])
  weight = ((k + 1) ** r) * (lr_max ** weight_lr_power)
  weight_sum = group["weight_sum"] = group["weight_sum"] + weight
  ckp1 = weight / weight_sum
  bias_correction2 = 1 - beta2 ** (k + 1)
  in_step_size = group["bias_correction"] == "step_size"
  step_size = lr * math.sqrt(bias_correction2) if in_step_size else lr

  for i, grad in enumerate(grads):
    buffers = state[i]
    z = buffers["z"]
    x = _lerp(params[i], z, 1 - 1 / beta1)
    exp_avg_sq = buffers["exp_avg_sq"] * beta2 + (1 - beta2) * grad * grad
    if in_step_size:
      denom = np.sqrt(exp_avg_sq) + eps
    else:
      denom = np.sqrt(exp_avg_sq / bias_correction2) + eps
    z = z + (-step_size) * (grad / denom)
    at = x if group["weight_decay_at"] == "x" else ys[i]
    z = z - (step_size * decay) * at
    params[i] = _lerp(x, z, ckp1)
    buffers.update(z=z, exp_avg_sq=exp_avg_sq)
  group["k"] = k + 1


# --- The cases ------------------------------------------------------------


def _hparams_config():
  """The submission's optimizer, as init_optimizer_state builds it."""
  return dict(
      lr=HPARAMS["learning_rate"],
      betas=(1.0 - HPARAMS["one_minus_beta1"], HPARAMS["beta2"]),
      eps=1e-8,  # not passed by the submission: the constructor's default
      weight_decay=HPARAMS["weight_decay"],
      weight_lr_power=HPARAMS["weight_lr_power"],
      warmup_steps=int(HPARAMS["warmup_factor"] * STEP_HINT * 0.75),
      r=HPARAMS["r"], weight_decay_at="x", bias_correction="step_size")


# name -> (port arguments, whether the group's lr follows _lr_factor)
CASES = {
    # HPARAMS exactly (warmup 12 steps): the points move by ~0.3 in 120 steps.
    "hparams": (_hparams_config(), False),
    # The same with a learning rate 20x larger, so the trajectory settles.
    "hparams_lr_0.05": ({**_hparams_config(), "lr": 0.05}, False),
    "x_step_size_schedule": (dict(lr=0.05, betas=(0.9, 0.99), eps=1e-8,
                                  weight_decay=0.1, weight_lr_power=2.0,
                                  warmup_steps=5, r=0.5, weight_decay_at="x",
                                  bias_correction="step_size"), True),
    "x_denominator": (dict(lr=0.05, betas=(0.9, 0.999), eps=1e-6,
                           weight_decay=0.2, weight_lr_power=1.0,
                           warmup_steps=10, r=0.0, weight_decay_at="x",
                           bias_correction="denominator"), False),
    "y_step_size": (dict(lr=0.05, betas=(0.95, 0.995), eps=1e-8,
                         weight_decay=0.2, weight_lr_power=2.0,
                         warmup_steps=8, r=1.0, weight_decay_at="y",
                         bias_correction="step_size"), False),
}


def _optfree_kwargs(config):
  """optfree.schedule_free_adamw's keyword arguments, every one explicit."""
  b1, b2 = config["betas"]
  return dict(learning_rate=config["lr"], b1=b1, b2=b2, eps=config["eps"],
              warmup_steps=config["warmup_steps"], r=config["r"],
              weight_lr_power=config["weight_lr_power"],
              weight_decay=config["weight_decay"],
              weight_decay_at=config["weight_decay_at"],
              bias_correction=config["bias_correction"], mask=None,
              state_dtype=None, rounding="nearest", seed=0)


def _run(config, lrs, problem):
  """Trains one case; returns y and x after every step."""
  group, state = _new_optimizer(**config)
  params = [a.copy() for a in _split(problem["init"])]
  h, target = _split(problem["h"]), _split(problem["target"])
  ys, xs = [], []
  for k in range(STEPS):
    noise = _split(problem["noise"][k])

    def gradient_at(points, noise=noise):
      return [hi * (p - ti) + ni
              for p, hi, ti, ni in zip(points, h, target, noise)]

    if lrs is not None:
      group["lr"] = lrs[k]
    _step(group, state, params, gradient_at)
    beta1 = group["betas"][0]
    # Where the next step's gradient is taken: optfree's params.
    ys.append(np.concatenate(
        [_lerp(p, state[i]["z"], 1 - beta1).ravel()
         for i, p in enumerate(params)]))
    xs.append(np.concatenate([p.ravel() for p in params]))
  return np.array(ys), np.array(xs)


def _check_against_schedulefree_golden(problem):
  """With decay at y and the bias correction in the denominator the port is
  schedulefree 1.4.1's AdamWScheduleFree: its torch-written adamw cases in
  schedule_free.npz must agree to float64 rounding."""
  golden = np.load(os.path.join(HERE, "schedule_free.npz"))
  for key in ("init", "h", "target", "noise"):
    np.testing.assert_array_equal(golden[f"problem/{key}"], problem[key])
  errors = {}
  for name in ("adamw_default", "adamw_warmup_decay", "adamw_r_power",
               "adamw_schedule"):
    saved = json.loads(str(golden[f"{name}/config"]))
    kwargs = dict(saved["kwargs"])
    config = dict(lr=kwargs.pop("lr"),
                  betas=tuple(kwargs.pop("betas", (0.9, 0.999))),
                  weight_decay_at="y", bias_correction="denominator",
                  **kwargs)
    lrs = list(golden[f"{name}/lr"]) if saved["scheduled"] else None
    ys, xs = _run(config, lrs, problem)
    expected_y, expected_x = golden[f"{name}/y"], golden[f"{name}/x"]
    errors[name] = max(
        np.abs(ys - expected_y).max() / np.abs(expected_y).max(),
        np.abs(xs[-1] - expected_x).max() / np.abs(expected_x).max())
    assert errors[name] < 1e-12, (name, errors[name])
  return errors


def _float32_error(name, lrs, problem, arrays):
  """The port's own float32 error on a case, relative to the float64 scale.

  Run on float32 arrays with Python-float scalars, as the torch code runs
  in float32: the float32 tolerance of the tests is a small multiple of it.
  """
  problem32 = {key: value.astype(np.float32) for key, value in problem.items()}
  ys, xs = _run(CASES[name][0], lrs, problem32)
  assert ys.dtype == np.float32
  return max(np.abs(got - arrays[f"{name}/{key}"]).max()
             / np.abs(arrays[f"{name}/{key}"]).max()
             for key, got in (("y", ys), ("x", xs)))


def main():
  problem = _problem()
  errors = _check_against_schedulefree_golden(problem)
  arrays = {f"problem/{key}": value for key, value in problem.items()}
  arrays["meta"] = np.array(
      f"numpy {np.__version__}, python {platform.python_version()}; "
      "numpy port of AdamWScheduleFree.step (mlcommons/"
      "submissions_algorithms, submissions/self_tuning/schedule_free_adamw/"
      "submission.py at 2f67ea5e3ec9a9b8f5a6b82ac8258fc610c96e84), "
      f"exp_avg_sq in float64; step_hint {STEP_HINT}; shapes {SHAPES}, "
      f"{STEPS} steps; generated by "
      "tests/reference/gen_schedule_free_algoperf.py"
  )
  for name, (config, scheduled) in CASES.items():
    lrs = ([config["lr"] * _lr_factor(k) for k in range(STEPS)]
           if scheduled else None)
    ys, xs = _run(config, lrs, problem)
    assert np.all(np.isfinite(ys)) and np.abs(ys).max() < 10, name
    arrays[f"{name}/config"] = np.array(json.dumps(dict(
        optfree=_optfree_kwargs(config),
        reference={**config, "betas": list(config["betas"])},
        scheduled=scheduled)))
    arrays[f"{name}/y"] = ys
    arrays[f"{name}/x"] = xs
    if lrs is not None:
      arrays[f"{name}/lr"] = np.array(lrs)
    print(f"{name}: |y| <= {np.abs(ys).max():.3f}, x moved by "
          f"{np.abs(xs[-1] - problem['init']).max():.3f}, float32 port off "
          f"by {_float32_error(name, lrs, problem, arrays):.1e}")
  np.savez_compressed(PATH, **arrays)
  print("port (decay at y, bias correction in the denominator) vs "
        "schedulefree 1.4.1: " + ", ".join(
            f"{name} {error:.1e}" for name, error in errors.items()))
  print(f"wrote {PATH} ({os.path.getsize(PATH)} bytes, {len(CASES)} cases)")


if __name__ == "__main__":
  main()
