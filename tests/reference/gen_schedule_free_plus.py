"""Writes schedule_free_plus.npz: float64 golden trajectories of ScheduleFree+.

Run from the repository root (needs only numpy):

    python tests/reference/gen_schedule_free_plus.py

The reference is not on PyPI, so this file holds a numpy float64 port of its
update rule, written from the published source and not copied from it:
class ``AdamCScheduleFreePlusPaper``, method ``step_func``, in
``schedulefree/adamc_schedulefree_plus_paper.py`` of the public repository
facebookresearch/schedule_free, as read at commit
70785b53e778d0e872c0bbb75ff4ee54ee10c291. The port (``_step``) keeps the
reference's order of operations: the scalars (annealed Schedule-Free
momentum, L1 norm of the gradient, its EMA and bias correction, inner-product
term, Polyak step, ``lr_max``, averaging weight) in Python floats, then for
each param group and each param, in order: the AdamC decay of z at y, Adam's
first and second moments with their bias corrections, the z step, the x lerp
and y. Tensor operations are spelled as torch evaluates them
(``a.add_(b, alpha=s)`` is ``a + s * b``, ``addcdiv_`` is ``a + s * (b / c)``).
Where the reference allocates its buffers on the first step (after the
global sums), the port does the same, so the inner-product term of the first
step is 0.

Names: the reference's ``lr``, ``betas``, ``sf_beta1``, ``sf_beta1_max``,
``sf_beta1_anneal_steps``, ``polyak_beta`` are optfree's ``learning_rate``,
``(b1, b2)``, ``sf_b1``, ``sf_b1_max``, ``sf_b1_anneal_steps``, ``polyak_b``;
``eps``, ``weight_decay``, ``r``, ``weight_lr_power``, ``c_warmup`` keep
their names. Its ``x`` buffer is optfree's ``eval_params``, its ``y`` (the
params during training) optfree's params, ``exp_avg``/``exp_avg_sq`` are m/v.
A weight-decay mask is two param groups, one with ``weight_decay=0``; the
Polyak step's sums still run over every param. A learning-rate schedule is
the group's ``lr`` set before each step from a table.

Two behaviours of the reference that a reader may not expect, kept here:
the group's ``grad_l1_ema`` is overwritten with the bias-corrected value, so
the next step's EMA starts from the corrected one (with ``polyak_beta > 0``
that is not the textbook bias-corrected EMA); and ``lr_max`` starts at
``eps``, not 0.

Problem: the three params (shapes (5,), (2, 3), ()) and noisy quadratic of
gen_schedule_free.py (same seed, same arrays). The Polyak step needs the
loss value, so the loss is the non-negative
f_k(y) = 0.5 * sum(h * (y - target + noise[k] / h)**2) + floor, whose
gradient is h * (y - target) + noise[k]; ``floor`` is 0 but in one case.
Both are taken at y, the params during training. The file holds the problem
and per case: ``config`` (JSON: ``optfree``, every keyword argument of
``optfree.schedule_free_plus`` explicit, the mask as one bool per leaf;
``reference``, the port's arguments in the reference's names; ``floor``;
``scheduled``), ``lr`` (the learning rate of each step, when scheduled),
``y`` and ``x`` after every step (flattened leaves concatenated), ``value``
(the f passed to each step), ``z``, ``m`` and ``v`` after the last step
(the buffers z, exp_avg, exp_avg_sq), and for diagnosis ``group_lr`` (lr
times the Polyak step), ``ip_term`` and ``sf_b1`` (the annealed momentum) of
each step.
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
PATH = os.path.join(HERE, "schedule_free_plus.npz")


def _lr_factor(k):
  # A linear warmup over 10 steps, then gen_schedule_free.py's wobble: falls
  # below its earlier peak, then rises above it (lr_max is a running max).
  return min(1.0, (k + 1) / 10) * (0.6 + 0.4 * math.sin(0.09 * k) + 0.004 * k)


# --- The port -------------------------------------------------------------


def _new_optimizer(groups, lr=1.0, betas=(0.9, 0.95), sf_beta1=0.9,
                   eps=1e-8, r=0.0, polyak_beta=0.0, c_warmup=0,
                   sf_beta1_anneal_steps=0, sf_beta1_max=0.965,
                   weight_lr_power=2.0):
  """The optimizer's groups and (empty) per-param state.

  Args:
    groups: one dict per param group: ``params``, a list of param indices,
      and ``weight_decay``.
    lr: the learning rate of every group (the reference's default 1.0).
    betas: Adam's (b1, b2).
    sf_beta1: the Schedule-Free momentum.
    eps: Adam's epsilon, also the floor of lr and the initial lr_max.
    r: power of the step count in the averaging weight.
    polyak_beta: EMA coefficient of the gradient's L1 norm.
    c_warmup: steps whose averaging coefficient is forced to 1.
    sf_beta1_anneal_steps: steps over which sf_beta1 anneals (0: none).
    sf_beta1_max: sf_beta1 at the end of the annealing.
    weight_lr_power: power of lr_max in the averaging weight.

  Returns:
    ``(groups, state)`` as ``_step`` takes them; the defaults are the
    reference constructor's.
  """
  out = []
  for group in groups:
    out.append(dict(
        params=list(group["params"]), weight_decay=group["weight_decay"],
        lr=lr, betas=betas, sf_beta1=sf_beta1, eps=eps, r=r, k=0,
        weight_sum=0.0, lr_max=eps, polyak_beta=polyak_beta,
        sf_beta1_anneal_steps=sf_beta1_anneal_steps,
        sf_beta1_max=sf_beta1_max, grad_l1_ema=0.0, c_warmup=c_warmup,
        weight_lr_power=weight_lr_power))
  return out, {}


def _step(groups, state, params, grads, function_value, polyak_lr=None):
  """One reference step; updates groups, state and params in place.

  Args:
    groups: the param groups of ``_new_optimizer`` (their scalars change).
    state: per-param dict of buffers z, x, y, exp_avg, exp_avg_sq, filled on
      the first step.
    params: list of float64 arrays (y during training), written with y.
    grads: list of the gradients at ``params``.
    function_value: the loss at ``params``.
    polyak_lr: for the port's self-check only: replaces the Polyak step.

  Returns:
    A dict of this step's scalars (``group_lr``, ``ip_term``, ``sf_b1``,
    ``f_plus_ip``) of the first group.
  """
  first = groups[0]
  grad_l1_ema = first["grad_l1_ema"]
  k = first["k"]
  polyak_beta = first["polyak_beta"]
  sf_beta1 = first["sf_beta1"]
  sf_beta1_max = first["sf_beta1_max"]
  anneal_steps = first["sf_beta1_anneal_steps"]
  if anneal_steps > 0:
    # 1 - sf_beta1_k moves from 1 - sf_beta1 to 1 - sf_beta1_max
    # geometrically (linearly in log space), then stays.
    progress = min(k / anneal_steps, 1.0)
    sf_beta1_k = 1 - math.exp(math.log(1 - sf_beta1) * (1 - progress)
                              + math.log(1 - sf_beta1_max) * progress)
  else:
    sf_beta1_k = sf_beta1

  grad_l1_list, ip_term_list = [], []
  for group in groups:
    for i in group["params"]:
      grad = grads[i]
      grad_l1_list.append(np.sum(np.abs(grad)))
      if i in state:
        buffers = state[i]
        ip_term_list.append(
            sf_beta1_k * np.sum(grad * (buffers["z"] - buffers["x"])))
  grad_l1 = float(_sum_in_order(grad_l1_list))
  ip_term = float(_sum_in_order(ip_term_list))
  global_function_value = float(function_value)

  grad_l1_ema = (polyak_beta * grad_l1_ema
                 + (1 - polyak_beta) * grad_l1 * math.sqrt(math.pi / 2))
  grad_l1_ema_corr = grad_l1_ema / (1 - polyak_beta ** (k + 1))
  # A zero gradient on the first step divides by zero here (a Python
  # ZeroDivisionError in the reference).
  if polyak_lr is None:
    polyak_lr = max(0, global_function_value + ip_term) / grad_l1_ema_corr

  report = None
  for group in groups:
    eps = group["eps"]
    lr = max(group["lr"], eps)
    decay = group["weight_decay"]
    beta1, beta2 = group["betas"]
    k = group["k"]
    r = group["r"]
    weight_lr_power = group["weight_lr_power"]
    c_warmup = group["c_warmup"]
    bias_correction1 = 1 - beta1 ** (k + 1)
    bias_correction2 = 1 - beta2 ** (k + 1)
    group_lr = lr * polyak_lr
    # The reference stores the corrected EMA under the raw EMA's name too,
    # and the next step reads that name.
    group["grad_l1_ema"] = grad_l1_ema_corr
    lr_max = group["lr_max"] = max(group_lr, group["lr_max"])
    if k < c_warmup:
      # x follows z; the weight sum does not grow during this warmup.
      ckp1 = 1.0
    else:
      weight = ((k + 1) ** r) * (lr_max ** weight_lr_power)
      weight_sum = group["weight_sum"] = group["weight_sum"] + weight
      ckp1 = weight / weight_sum
    if report is None:
      report = dict(group_lr=group_lr, ip_term=ip_term, sf_b1=sf_beta1_k,
                    f_plus_ip=global_function_value + ip_term)

    for i in group["params"]:
      grad = grads[i]
      if i not in state:
        p = params[i]
        state[i] = dict(z=p.copy(), x=p.copy(), y=p.copy(),
                        exp_avg_sq=np.zeros_like(p),
                        exp_avg=np.zeros_like(p))
      buffers = state[i]
      z, y = buffers["z"], buffers["y"]
      # AdamC's decay: at y, scaled by the square of the step's lr.
      z = z - (group_lr * group_lr * decay) * y
      exp_avg = buffers["exp_avg"] * beta1 + (1 - beta1) * grad
      exp_avg_corr = exp_avg / bias_correction1
      exp_avg_sq = buffers["exp_avg_sq"] * beta2 + (1 - beta2) * grad * grad
      denom = np.sqrt(exp_avg_sq / bias_correction2) + eps
      z = z + (-group_lr) * (exp_avg_corr / denom)
      x = buffers["x"] * (1 - ckp1) + ckp1 * z
      y = x * sf_beta1_k + (1 - sf_beta1_k) * z
      buffers.update(z=z, x=x, y=y, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)
      params[i] = y.copy()
    group["k"] = k + 1
  return report


def _sum_in_order(values):
  # torch.stack(list).sum() of a handful of scalars; 0 for an empty list.
  total = 0.0
  for value in values:
    total = total + value
  return total


# --- The cases ------------------------------------------------------------

# Every argument of the port, with the reference constructor's defaults.
REFERENCE_DEFAULTS = dict(lr=1.0, betas=(0.9, 0.95), sf_beta1=0.9, eps=1e-8,
                          weight_decay=0.0, r=0.0, polyak_beta=0.0,
                          c_warmup=0, sf_beta1_anneal_steps=0,
                          sf_beta1_max=0.965, weight_lr_power=2.0)

# name -> (reference arguments that differ from its defaults, extras):
# extras are the loss floor, whether the lr follows _lr_factor, and the
# weight-decay mask (one bool per leaf; None decays every leaf).
CASES = {
    "defaults": (dict(lr=0.5), dict()),
    "polyak_b": (dict(lr=1.0, polyak_beta=0.9, betas=(0.8, 0.99),
                      eps=1e-6), dict()),
    "polyak_b_half": (dict(lr=0.5, polyak_beta=0.5), dict()),
    "c_warmup": (dict(lr=0.5, c_warmup=10), dict()),
    "sf_b1_anneal": (dict(lr=0.5, sf_beta1_anneal_steps=60,
                          sf_beta1_max=0.98), dict()),
    "r_power": (dict(lr=0.5, r=1.0, weight_lr_power=1.0, sf_beta1=0.8),
                dict()),
    "weight_decay": (dict(lr=0.5, weight_decay=5.0), dict()),
    "weight_decay_mask": (dict(lr=0.5, weight_decay=5.0),
                          dict(mask=[True, True, False])),
    "schedule": (dict(lr=0.5, c_warmup=5), dict(scheduled=True)),
    "floor": (dict(lr=0.3), dict(floor=0.5)),
}


def _optfree_kwargs(reference, mask):
  """optfree.schedule_free_plus's keyword arguments, every one explicit."""
  b1, b2 = reference["betas"]
  return dict(
      learning_rate=reference["lr"], b1=b1, b2=b2,
      sf_b1=reference["sf_beta1"], sf_b1_max=reference["sf_beta1_max"],
      sf_b1_anneal_steps=reference["sf_beta1_anneal_steps"],
      eps=reference["eps"], weight_decay=reference["weight_decay"],
      r=reference["r"], weight_lr_power=reference["weight_lr_power"],
      polyak_b=reference["polyak_beta"], c_warmup=reference["c_warmup"],
      warmup_steps=0, mask=mask, state_dtype=None, rounding="nearest",
      seed=0)


def _loss_and_grads(y, problem, k, floor):
  h, target = _split(problem["h"]), _split(problem["target"])
  noise = _split(problem["noise"][k])
  loss = floor
  grads = []
  for yi, hi, ti, ni in zip(y, h, target, noise):
    loss = loss + 0.5 * float(np.sum(hi * (yi - ti + ni / hi) ** 2))
    grads.append(hi * (yi - ti) + ni)
  return loss, grads


def _run(reference, extras, problem, polyak_lr=None, lrs=None):
  """Trains one case; returns per-step arrays."""
  mask = extras.get("mask")
  decay = reference["weight_decay"]
  leaves = list(range(len(SHAPES)))
  if mask is None:
    groups = [dict(params=leaves, weight_decay=decay)]
  else:
    groups = [dict(params=[i for i in leaves if mask[i]], weight_decay=decay),
              dict(params=[i for i in leaves if not mask[i]],
                   weight_decay=0.0)]
  kwargs = {key: value for key, value in reference.items()
            if key != "weight_decay"}
  groups, state = _new_optimizer(groups, **kwargs)
  params = [a.copy() for a in _split(problem["init"])]
  floor = extras.get("floor", 0.0)
  if lrs is None and extras.get("scheduled"):
    lrs = [reference["lr"] * _lr_factor(k) for k in range(STEPS)]
  out = dict(y=[], x=[], value=[], group_lr=[], ip_term=[], sf_b1=[],
             f_plus_ip=[])
  for k in range(STEPS):
    if lrs is not None:
      for group in groups:
        group["lr"] = lrs[k]
    value, grads = _loss_and_grads(params, problem, k, floor)
    report = _step(groups, state, params, grads, value, polyak_lr)
    out["value"].append(value)
    for key, scalar in report.items():
      out[key].append(scalar)
    out["y"].append(np.concatenate([p.ravel() for p in params]))
    out["x"].append(np.concatenate([state[i]["x"].ravel() for i in leaves]))
  out = {key: np.array(value) for key, value in out.items()}
  for key, buffer in (("z", "z"), ("m", "exp_avg"), ("v", "exp_avg_sq")):
    out[key] = np.concatenate([state[i][buffer].ravel() for i in leaves])
  if lrs is not None:
    out["lr"] = np.array(lrs)
  return out


def _check_against_schedulefree_golden(problem):
  """Self-check of the port's Adam and Schedule-Free part.

  With Adam's b1 = 0, no decay and the Polyak step replaced by 1, the port
  is schedulefree 1.4.1's ScheduleFreeWrapperReference over torch's Adam
  (b1 = 0): case ``wrap_adam_schedule`` of schedule_free.npz, written from
  the real package. Its y must agree to float64 rounding.
  """
  golden = np.load(os.path.join(HERE, "schedule_free.npz"))
  for key in ("init", "h", "target", "noise"):
    np.testing.assert_array_equal(golden[f"problem/{key}"], problem[key])
  config = json.loads(str(golden["wrap_adam_schedule/config"]))
  assert config["kwargs"] == dict(lr=0.05, b2=0.99), config
  reference = {**REFERENCE_DEFAULTS, "betas": (0.0, 0.99), "sf_beta1": 0.9}
  out = _run(reference, {}, problem, polyak_lr=1.0,
             lrs=list(golden["wrap_adam_schedule/lr"]))
  expected = golden["wrap_adam_schedule/y"]
  error = np.abs(out["y"] - expected).max() / np.abs(expected).max()
  assert error < 1e-12, error
  return error


def _float32_error(name, problem, arrays):
  """The port's own float32 error on a case, relative to the float64 scale.

  Run on float32 arrays with Python-float scalars, as the torch code runs
  in float32: the float32 tolerance of the tests is a small multiple of it.
  """
  overrides, extras = CASES[name]
  problem32 = {key: value.astype(np.float32) for key, value in problem.items()}
  out = _run({**REFERENCE_DEFAULTS, **overrides}, extras, problem32)
  assert out["y"].dtype == np.float32
  return max(np.abs(out[key] - arrays[f"{name}/{key}"]).max()
             / np.abs(arrays[f"{name}/{key}"]).max() for key in ("y", "x"))


def main():
  problem = _problem()
  check = _check_against_schedulefree_golden(problem)
  arrays = {f"problem/{key}": value for key, value in problem.items()}
  arrays["meta"] = np.array(
      f"numpy {np.__version__}, python {platform.python_version()}; "
      "numpy port of AdamCScheduleFreePlusPaper.step_func "
      "(facebookresearch/schedule_free, schedulefree/"
      "adamc_schedulefree_plus_paper.py at "
      "70785b53e778d0e872c0bbb75ff4ee54ee10c291); "
      f"shapes {SHAPES}, {STEPS} steps; generated by "
      "tests/reference/gen_schedule_free_plus.py"
  )
  clipped_cases = []
  for name, (overrides, extras) in CASES.items():
    reference = {**REFERENCE_DEFAULTS, **overrides}
    out = _run(reference, extras, problem)
    for key in ("y", "x", "group_lr"):
      assert np.all(np.isfinite(out[key])), (name, key)
    # Bounded: the optimum is within a few units of the origin.
    assert np.abs(out["y"]).max() < 10, (name, np.abs(out["y"]).max())
    clipped = int(np.sum(out["f_plus_ip"] < 0))
    if clipped:
      clipped_cases.append(name)
    mask = extras.get("mask")
    config = dict(
        optfree=_optfree_kwargs(reference, mask),
        reference={**reference, "betas": list(reference["betas"])},
        floor=extras.get("floor", 0.0),
        scheduled=bool(extras.get("scheduled", False)),
        mask=mask,
    )
    arrays[f"{name}/config"] = np.array(json.dumps(config))
    for key in ("y", "x", "value", "group_lr", "ip_term", "sf_b1", "z", "m",
                "v"):
      arrays[f"{name}/{key}"] = out[key]
    if "lr" in out:
      arrays[f"{name}/lr"] = out["lr"]
    print(f"{name}: |y| <= {np.abs(out['y']).max():.3f}, final f "
          f"{out['value'][-1]:.4f}, group_lr in "
          f"[{out['group_lr'].min():.3g}, {out['group_lr'].max():.3g}], "
          f"{clipped} steps with f + ip_term < 0, float32 port off by "
          f"{_float32_error(name, problem, arrays):.1e}")
  # The max(0, f + ip_term) of the Polyak step must be exercised.
  assert clipped_cases, "no case clips f + ip_term at 0"
  np.savez_compressed(PATH, **arrays)
  print(f"port vs schedulefree 1.4.1 (wrap_adam_schedule): {check:.1e}")
  print(f"wrote {PATH} ({os.path.getsize(PATH)} bytes, {len(CASES)} cases)")


if __name__ == "__main__":
  main()
