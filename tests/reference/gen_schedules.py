"""Writes tests/reference/schedules.npz: lr and momentum values stepped out of torch.

Run: PYTHONPATH=. /work/venv-ref/bin/python tests/reference/gen_schedules.py
(torch 2.13.0; the extra ``reference`` of pyproject.toml).

Every case is an optfree schedule spec, {"fn": name, "kwargs": {...}} (nested for
sequential_schedule and per_epoch), and the values torch gives the optimizer
before each of its steps when ``scheduler.step()`` follows every
``optimizer.step()`` (Adam, so that momentum schedules drive ``betas[0]``), in
float64. Only the kwargs the spec names are passed to torch; the rest take
torch's defaults, so the tests also check that optfree's defaults are torch's.
Schedules torch has no class for (trapezoidal, warmup-stable-decay) are built
from SequentialLR of torch's LinearLR, ConstantLR, CosineAnnealingLR and
LambdaLR. The specs go into the file as JSON under "cases".

Inputs that torch accepts although they look degenerate (repeated, unsorted
or negative milestones, ``step_size_down=0``, a OneCycle phase that no count
reaches, ``gamma=0``, ``total_iters <= 0``) are cases like any other. Inputs
that optfree rejects are in REJECTED: for each, what torch does with the same
input goes into the file under "rejected" (its exception, or the values it
gave), so the tests can tell "torch fails too" from "torch accepts".
"""

import json
import math
import pathlib
import platform
import warnings

import numpy as np

OUT = pathlib.Path(__file__).with_name("schedules.npz")


def spec(fn, **kwargs):
  return {"fn": fn, "kwargs": kwargs}


CYCLIC_MOMENTUM_DEFAULTS = {"base_lr": 0.01, "max_lr": 0.1}
ONECYCLE_MOMENTUM_MAX_LR = 0.1

# name -> (spec, number of counts). Each runs over at least two cycles or well
# past the end of its schedule (OneCycleLR raises past total_steps).
CASES = {
    "step_default_gamma": (spec("step_schedule", init_value=0.1, step_size=3), 20),
    "step": (spec("step_schedule", init_value=0.1, step_size=7, gamma=0.5), 50),
    "multistep": (
        spec("multistep_schedule", init_value=0.2, milestones=[5, 12, 30], gamma=0.3),
        50,
    ),
    "multistep_at_zero": (
        spec("multistep_schedule", init_value=0.2, milestones=[0, 4]), 10,
    ),
    "exponential": (spec("exponential_schedule", init_value=0.1, gamma=0.95), 100),
    "constant_factor_default": (spec("constant_factor_schedule", init_value=0.1), 15),
    "constant_factor": (
        spec("constant_factor_schedule", init_value=0.05, factor=0.5, total_steps=10),
        30,
    ),
    "linear_factor_default": (spec("linear_factor_schedule", init_value=0.1), 15),
    "linear_factor_up": (
        spec("linear_factor_schedule", init_value=0.1, start_factor=0.1,
             end_factor=0.9, total_steps=20),
        40,
    ),
    "linear_factor_down": (
        spec("linear_factor_schedule", init_value=0.3, start_factor=1.0,
             end_factor=0.0, total_steps=15),
        30,
    ),
    "polynomial_default": (spec("polynomial_decay_schedule", init_value=0.1), 15),
    "polynomial_power2": (
        spec("polynomial_decay_schedule", init_value=0.1, total_steps=20, power=2.0),
        40,
    ),
    "polynomial_sqrt": (
        spec("polynomial_decay_schedule", init_value=0.1, total_steps=20, power=0.5),
        40,
    ),
    "cosine": (spec("cosine_annealing_schedule", init_value=0.1, t_max=10), 55),
    "cosine_eta_min": (
        spec("cosine_annealing_schedule", init_value=0.1, t_max=7, eta_min=0.01), 50,
    ),
    "cosine_t_max_1": (spec("cosine_annealing_schedule", init_value=0.1, t_max=1), 10),
    "cosine_long": (spec("cosine_annealing_schedule", init_value=1.0, t_max=100), 500),
    "warm_restarts": (
        spec("cosine_warm_restarts_schedule", init_value=0.1, t_0=5), 40,
    ),
    "warm_restarts_mult2": (
        spec("cosine_warm_restarts_schedule", init_value=0.1, t_0=3, t_mult=2,
             eta_min=0.001),
        200,
    ),
    "warm_restarts_mult3": (
        spec("cosine_warm_restarts_schedule", init_value=0.1, t_0=2, t_mult=3), 250,
    ),
    "warm_restarts_t0_1_mult2": (
        spec("cosine_warm_restarts_schedule", init_value=0.1, t_0=1, t_mult=2), 300,
    ),
    "cyclic_triangular": (
        spec("cyclic_schedule", base_lr=0.01, max_lr=0.1, step_size_up=5), 40,
    ),
    "cyclic_asymmetric": (
        spec("cyclic_schedule", base_lr=0.01, max_lr=0.1, step_size_up=3,
             step_size_down=7),
        45,
    ),
    "cyclic_triangular2": (
        spec("cyclic_schedule", base_lr=0.01, max_lr=0.1, step_size_up=4,
             step_size_down=6, mode="triangular2"),
        60,
    ),
    "cyclic_exp_range": (
        spec("cyclic_schedule", base_lr=0.01, max_lr=0.1, step_size_up=5,
             mode="exp_range", gamma=0.97),
        60,
    ),
    "cyclic_momentum_triangular": (
        spec("cyclic_momentum_schedule", step_size_up=5), 40,
    ),
    "cyclic_momentum_triangular2": (
        spec("cyclic_momentum_schedule", base_momentum=0.85, max_momentum=0.95,
             step_size_up=4, step_size_down=6, mode="triangular2"),
        60,
    ),
    "cyclic_momentum_exp_range": (
        spec("cyclic_momentum_schedule", step_size_up=3, step_size_down=5,
             mode="exp_range", gamma=0.95),
        60,
    ),
    "onecycle_default": (spec("onecycle_schedule", max_lr=0.1, total_steps=100), 100),
    "onecycle_pct_rounding": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=10), 10,
    ),
    "onecycle_linear": (
        spec("onecycle_schedule", max_lr=0.5, total_steps=50, pct_start=0.25,
             anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0),
        50,
    ),
    "onecycle_three_phase": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=100, three_phase=True), 100,
    ),
    "onecycle_three_phase_linear": (
        spec("onecycle_schedule", max_lr=0.2, total_steps=37, pct_start=0.4,
             anneal_strategy="linear", three_phase=True),
        37,
    ),
    "onecycle_momentum_default": (
        spec("onecycle_momentum_schedule", total_steps=100), 100,
    ),
    "onecycle_momentum_linear": (
        spec("onecycle_momentum_schedule", total_steps=50, pct_start=0.25,
             anneal_strategy="linear", base_momentum=0.8, max_momentum=0.9),
        50,
    ),
    "onecycle_momentum_three_phase": (
        spec("onecycle_momentum_schedule", total_steps=37, pct_start=0.4,
             three_phase=True),
        37,
    ),
    "sequential_warmup_cosine": (
        spec("sequential_schedule",
             schedules=[spec("linear_factor_schedule", init_value=0.1,
                             start_factor=0.1, total_steps=5),
                        spec("cosine_annealing_schedule", init_value=0.1, t_max=20)],
             milestones=[5]),
        60,
    ),
    "sequential_three": (
        spec("sequential_schedule",
             schedules=[spec("constant_factor_schedule", init_value=0.1,
                             factor=0.5, total_steps=3),
                        spec("exponential_schedule", init_value=0.1, gamma=0.9),
                        spec("step_schedule", init_value=0.1, step_size=5,
                             gamma=0.5)],
             milestones=[4, 15]),
        40,
    ),
    "sequential_restarts": (
        spec("sequential_schedule",
             schedules=[spec("linear_factor_schedule", init_value=0.1,
                             start_factor=0.2, total_steps=3),
                        spec("cosine_warm_restarts_schedule", init_value=0.1,
                             t_0=4, t_mult=2)],
             milestones=[3]),
        40,
    ),
    "per_epoch_step": (
        spec("per_epoch",
             schedule=spec("step_schedule", init_value=0.1, step_size=2, gamma=0.5),
             steps_per_epoch=4),
        40,
    ),
    "per_epoch_cosine": (
        spec("per_epoch",
             schedule=spec("cosine_annealing_schedule", init_value=0.1, t_max=4),
             steps_per_epoch=3),
        40,
    ),
    "trapezoidal": (
        spec("trapezoidal_schedule", base_lr=0.01, max_lr=0.1, step_size=5,
             anneal_start=12),
        30,
    ),
    "trapezoidal_no_plateau": (
        spec("trapezoidal_schedule", base_lr=0.02, max_lr=0.08, step_size=4,
             anneal_start=4),
        15,
    ),
    "wsd_linear": (
        spec("warmup_stable_decay_schedule", peak_value=0.1, total_steps=50,
             warmup_steps=5, init_value=0.01, end_value=0.001),
        60,
    ),
    "wsd_cosine": (
        spec("warmup_stable_decay_schedule", peak_value=0.1, total_steps=50,
             decay_steps=15, decay_shape="cosine"),
        60,
    ),
    "wsd_1_sqrt": (
        spec("warmup_stable_decay_schedule", peak_value=0.1, total_steps=50,
             warmup_steps=10, decay_steps=20, init_value=0.001,
             decay_shape="1-sqrt"),
        60,
    ),
    # Inputs torch accepts that look degenerate (issue 14).
    "multistep_repeated": (
        spec("multistep_schedule", init_value=0.1, milestones=[3, 3, 7, 7, 7],
             gamma=0.5),
        15,
    ),
    "multistep_unsorted_negative": (
        spec("multistep_schedule", init_value=0.1, milestones=[9, -2, 4, 0],
             gamma=0.5),
        15,
    ),
    "multistep_gamma_0": (
        spec("multistep_schedule", init_value=0.1, milestones=[3], gamma=0.0), 8,
    ),
    "step_gamma_0": (spec("step_schedule", init_value=0.1, step_size=3, gamma=0.0), 8),
    "exponential_gamma_0": (spec("exponential_schedule", init_value=0.1, gamma=0.0), 5),
    "exponential_gamma_above_1": (
        spec("exponential_schedule", init_value=0.01, gamma=1.05), 40,
    ),
    "constant_factor_total_0": (
        spec("constant_factor_schedule", init_value=0.1, factor=0.5, total_steps=0), 8,
    ),
    "constant_factor_total_negative": (
        spec("constant_factor_schedule", init_value=0.1, factor=0.5, total_steps=-3), 8,
    ),
    "linear_factor_total_negative": (
        spec("linear_factor_schedule", init_value=0.1, start_factor=0.25,
             total_steps=-4),
        8,
    ),
    "polynomial_total_negative": (
        spec("polynomial_decay_schedule", init_value=0.1, total_steps=-2, power=2.0),
        8,
    ),
    "linear_factor_total_0": (
        spec("linear_factor_schedule", init_value=0.1, start_factor=0.5,
             total_steps=0),
        8,
    ),
    "polynomial_total_0": (
        spec("polynomial_decay_schedule", init_value=0.1, total_steps=0), 8,
    ),
    "cosine_eta_min_above_init": (
        spec("cosine_annealing_schedule", init_value=0.1, t_max=6, eta_min=0.3), 30,
    ),
    "cyclic_sawtooth": (
        spec("cyclic_schedule", base_lr=0.01, max_lr=0.1, step_size_up=4,
             step_size_down=0),
        20,
    ),
    "cyclic_sawtooth_triangular2": (
        spec("cyclic_schedule", base_lr=0.01, max_lr=0.1, step_size_up=3,
             step_size_down=0, mode="triangular2"),
        20,
    ),
    "cyclic_momentum_sawtooth": (
        spec("cyclic_momentum_schedule", step_size_up=5, step_size_down=0), 20,
    ),
    "cyclic_base_above_max": (
        spec("cyclic_schedule", base_lr=0.1, max_lr=0.01, step_size_up=3), 20,
    ),
    "cyclic_exp_range_gamma_0": (
        spec("cyclic_schedule", base_lr=0.01, max_lr=0.1, step_size_up=3,
             mode="exp_range", gamma=0.0),
        10,
    ),
    "cyclic_triangular_gamma_ignored": (
        spec("cyclic_schedule", base_lr=0.01, max_lr=0.1, step_size_up=3,
             gamma=-2.0),
        10,
    ),
    "onecycle_three_phase_pct_above_half": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=30, pct_start=0.6,
             three_phase=True),
        30,
    ),
    "onecycle_three_phase_pct_half": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=21, pct_start=0.5,
             anneal_strategy="linear", three_phase=True),
        21,
    ),
    "onecycle_momentum_three_phase_pct_above_half": (
        spec("onecycle_momentum_schedule", total_steps=30, pct_start=0.7,
             three_phase=True),
        30,
    ),
    "onecycle_pct_0": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=12, pct_start=0.0), 12,
    ),
    "onecycle_pct_1": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=12, pct_start=1.0), 12,
    ),
    "onecycle_rise_shorter_than_one_step": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=10, pct_start=0.05), 10,
    ),
    "onecycle_total_1": (spec("onecycle_schedule", max_lr=0.1, total_steps=1), 1),
    "onecycle_total_2": (spec("onecycle_schedule", max_lr=0.1, total_steps=2), 2),
    "sequential_repeated_milestones": (
        spec("sequential_schedule",
             schedules=[spec("constant_factor_schedule", init_value=0.1,
                             factor=0.5, total_steps=2),
                        spec("exponential_schedule", init_value=0.1, gamma=0.5),
                        spec("step_schedule", init_value=0.1, step_size=2,
                             gamma=0.5)],
             milestones=[3, 3]),
        15,
    ),
    "sequential_milestone_0": (
        spec("sequential_schedule",
             schedules=[spec("constant_factor_schedule", init_value=0.1,
                             factor=0.5, total_steps=2),
                        spec("exponential_schedule", init_value=0.1, gamma=0.5),
                        spec("step_schedule", init_value=0.1, step_size=2,
                             gamma=0.5)],
             milestones=[0, 6]),
        15,
    ),
    "sequential_negative_milestone": (
        spec("sequential_schedule",
             schedules=[spec("constant_factor_schedule", init_value=0.1,
                             factor=0.5, total_steps=2),
                        spec("linear_factor_schedule", init_value=0.1,
                             start_factor=0.2, total_steps=4)],
             milestones=[-3]),
        10,
    ),
    "wsd_no_stable": (
        spec("warmup_stable_decay_schedule", peak_value=0.1, total_steps=30,
             warmup_steps=10, decay_steps=20, init_value=0.001, end_value=0.01,
             decay_shape="cosine"),
        40,
    ),
}

RENAMED = {"total_steps": "total_iters", "t_max": "T_max", "t_0": "T_0",
           "t_mult": "T_mult"}


def initial_lr(case):
  kwargs = case["kwargs"]
  if case["fn"] == "sequential_schedule":
    values = {initial_lr(inner) for inner in kwargs["schedules"]}
    assert len(values) == 1, "SequentialLR's schedulers share one optimizer lr"
    return values.pop()
  if case["fn"] == "per_epoch":
    return initial_lr(kwargs["schedule"])
  if case["fn"] == "warmup_stable_decay_schedule":
    return kwargs["peak_value"]
  if case["fn"] in ("cyclic_schedule", "onecycle_schedule"):
    # CyclicLR and OneCycleLR overwrite the optimizer's lr, which then only
    # has to pass Adam's check (lr >= 0) when their own lr is negative.
    return abs(kwargs.get("base_lr", kwargs.get("max_lr")))
  # Trapezoidal's LinearLR factors scale max_lr.
  for name in ("init_value", "max_lr", "base_lr"):
    if name in kwargs:
      return kwargs[name]
  return ONECYCLE_MOMENTUM_MAX_LR  # the momentum-only cases


def torch_kwargs(kwargs, drop=("init_value",)):
  return {RENAMED.get(k, k): v for k, v in kwargs.items() if k not in drop}


def wsd_scheduler(optimizer, peak_value, total_steps, warmup_steps=0,
                  decay_steps=None, init_value=0.0, end_value=0.0,
                  decay_shape="linear"):
  from torch.optim import lr_scheduler  # pylint: disable=g-import-not-at-top
  if decay_steps is None:
    decay_steps = total_steps // 5
  pieces, milestones = [], []
  if warmup_steps:
    pieces.append(lr_scheduler.LinearLR(
        optimizer, start_factor=init_value / peak_value, end_factor=1.0,
        total_iters=warmup_steps))
    milestones.append(warmup_steps)
  decay_start = total_steps - decay_steps
  if decay_start > warmup_steps:
    pieces.append(lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=1))
    milestones.append(decay_start)
  if decay_shape == "linear":
    pieces.append(lr_scheduler.LinearLR(
        optimizer, start_factor=1.0, end_factor=end_value / peak_value,
        total_iters=decay_steps))
  elif decay_shape == "cosine":
    pieces.append(lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=decay_steps, eta_min=end_value))
  else:
    pieces.append(lr_scheduler.LambdaLR(
        optimizer,
        lambda k: (end_value + (peak_value - end_value)
                   * (1 - math.sqrt(min(k, decay_steps) / decay_steps)))
        / peak_value))
  milestones.append(total_steps)
  # Held at end_value after the decay (CosineAnnealingLR would climb again).
  pieces.append(lr_scheduler.ConstantLR(
      optimizer, factor=end_value / peak_value, total_iters=10**9))
  return lr_scheduler.SequentialLR(optimizer, pieces, milestones)


def make_scheduler(optimizer, case):
  from torch.optim import lr_scheduler  # pylint: disable=g-import-not-at-top
  fn, kwargs = case["fn"], case["kwargs"]
  if fn == "step_schedule":
    return lr_scheduler.StepLR(optimizer, **torch_kwargs(kwargs))
  if fn == "multistep_schedule":
    return lr_scheduler.MultiStepLR(optimizer, **torch_kwargs(kwargs))
  if fn == "exponential_schedule":
    return lr_scheduler.ExponentialLR(optimizer, **torch_kwargs(kwargs))
  if fn == "constant_factor_schedule":
    return lr_scheduler.ConstantLR(optimizer, **torch_kwargs(kwargs))
  if fn == "linear_factor_schedule":
    return lr_scheduler.LinearLR(optimizer, **torch_kwargs(kwargs))
  if fn == "polynomial_decay_schedule":
    return lr_scheduler.PolynomialLR(optimizer, **torch_kwargs(kwargs))
  if fn == "cosine_annealing_schedule":
    return lr_scheduler.CosineAnnealingLR(optimizer, **torch_kwargs(kwargs))
  if fn == "cosine_warm_restarts_schedule":
    return lr_scheduler.CosineAnnealingWarmRestarts(optimizer, **torch_kwargs(kwargs))
  if fn == "cyclic_schedule":
    return lr_scheduler.CyclicLR(optimizer, **kwargs)
  if fn == "cyclic_momentum_schedule":
    return lr_scheduler.CyclicLR(optimizer, **CYCLIC_MOMENTUM_DEFAULTS, **kwargs)
  if fn == "onecycle_schedule":
    return lr_scheduler.OneCycleLR(optimizer, **kwargs)
  if fn == "onecycle_momentum_schedule":
    return lr_scheduler.OneCycleLR(
        optimizer, max_lr=ONECYCLE_MOMENTUM_MAX_LR, **kwargs)
  if fn == "trapezoidal_schedule":
    low = kwargs["base_lr"] / kwargs["max_lr"]
    return lr_scheduler.SequentialLR(
        optimizer,
        [lr_scheduler.LinearLR(optimizer, start_factor=low, end_factor=1.0,
                               total_iters=kwargs["step_size"]),
         lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=low,
                               total_iters=kwargs["step_size"])],
        milestones=[kwargs["anneal_start"]])
  if fn == "warmup_stable_decay_schedule":
    return wsd_scheduler(optimizer, **kwargs)
  if fn == "sequential_schedule":
    return lr_scheduler.SequentialLR(
        optimizer, [make_scheduler(optimizer, inner) for inner in kwargs["schedules"]],
        milestones=kwargs["milestones"])
  raise KeyError(fn)


def run(case, num_counts):
  """Values of the optimizer's lr (or betas[0]) before each optimizer step.

  The scheduler steps between two recorded values only: its step after the
  last update computes a value no update uses (and OneCycleLR with
  ``pct_start=1`` divides by zero there).
  """
  import torch  # pylint: disable=g-import-not-at-top
  param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
  optimizer = torch.optim.Adam([param], lr=initial_lr(case))
  steps_per_epoch = 1
  inner = case
  if case["fn"] == "per_epoch":
    steps_per_epoch = case["kwargs"]["steps_per_epoch"]
    inner = case["kwargs"]["schedule"]
  scheduler = make_scheduler(optimizer, inner)
  momentum = case["fn"].endswith("momentum_schedule")
  values = []
  for count in range(num_counts):
    group = optimizer.param_groups[0]
    values.append(group["betas"][0] if momentum else group["lr"])
    param.grad = torch.ones_like(param)
    optimizer.step()
    if (count + 1) % steps_per_epoch == 0 and count + 1 < num_counts:
      scheduler.step()
  return np.asarray(values, dtype=np.float64)


# Inputs optfree rejects (name -> spec, counts to run), with what torch does.
# The tests require optfree's ValueError, and check here what torch did: most
# fail in torch too; the rest torch accepts and the tests list why optfree
# does not (see REJECTED_THOUGH_TORCH_ACCEPTS in tests/test_schedules.py).
REJECTED = {
    "step_size_0": (spec("step_schedule", init_value=0.1, step_size=0), 5),
    "step_negative_init": (spec("step_schedule", init_value=-0.1, step_size=3), 5),
    "step_size_float": (spec("step_schedule", init_value=0.1, step_size=2.5), 8),
    "step_size_negative": (spec("step_schedule", init_value=0.1, step_size=-3), 8),
    "step_gamma_negative": (
        spec("step_schedule", init_value=0.1, step_size=3, gamma=-0.5), 8,
    ),
    "multistep_gamma_negative": (
        spec("multistep_schedule", init_value=0.1, milestones=[2], gamma=-0.5), 5,
    ),
    "exponential_gamma_negative": (
        spec("exponential_schedule", init_value=0.1, gamma=-0.5), 5,
    ),
    "constant_factor_total_float": (
        spec("constant_factor_schedule", init_value=0.1, factor=0.5,
             total_steps=2.5),
        6,
    ),
    "linear_total_float": (
        spec("linear_factor_schedule", init_value=0.1, total_steps=2.5), 6,
    ),
    "linear_start_factor_above_1": (
        spec("linear_factor_schedule", init_value=0.1, start_factor=1.5), 5,
    ),
    "polynomial_total_float": (
        spec("polynomial_decay_schedule", init_value=0.1, total_steps=2.5), 6,
    ),
    "cosine_t_max_float": (
        spec("cosine_annealing_schedule", init_value=0.1, t_max=2.5), 8,
    ),
    "warm_restarts_t_0_float": (
        spec("cosine_warm_restarts_schedule", init_value=0.1, t_0=2.5), 5,
    ),
    "warm_restarts_eta_min_negative": (
        spec("cosine_warm_restarts_schedule", init_value=0.1, t_0=3,
             eta_min=-0.01),
        6,
    ),
    "cyclic_base_lr_negative": (
        spec("cyclic_schedule", base_lr=-0.01, max_lr=0.1, step_size_up=3), 6,
    ),
    "cyclic_max_lr_negative": (
        spec("cyclic_schedule", base_lr=0.01, max_lr=-0.1, step_size_up=3), 6,
    ),
    "cyclic_step_size_up_negative": (
        spec("cyclic_schedule", base_lr=0.01, max_lr=0.1, step_size_up=-3), 6,
    ),
    "cyclic_step_size_down_negative": (
        spec("cyclic_schedule", base_lr=0.01, max_lr=0.1, step_size_up=3,
             step_size_down=-1),
        6,
    ),
    "cyclic_momentum_above_1": (
        spec("cyclic_momentum_schedule", base_momentum=0.9, max_momentum=1.5,
             step_size_up=3),
        6,
    ),
    "onecycle_max_lr_negative": (
        spec("onecycle_schedule", max_lr=-0.1, total_steps=10), 10,
    ),
    "onecycle_div_factor_negative": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=10, div_factor=-25.0), 10,
    ),
    "onecycle_final_div_factor_negative": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=10,
             final_div_factor=-1e4),
        10,
    ),
    "onecycle_momentum_negative": (
        spec("onecycle_momentum_schedule", total_steps=10, base_momentum=-0.5), 10,
    ),
    "multistep_float_milestone": (
        spec("multistep_schedule", init_value=0.1, milestones=[2.5]), 5,
    ),
    "constant_factor_above_1": (
        spec("constant_factor_schedule", init_value=0.1, factor=1.5), 5,
    ),
    "constant_factor_negative": (
        spec("constant_factor_schedule", init_value=0.1, factor=-0.1), 5,
    ),
    "linear_start_factor_0": (
        spec("linear_factor_schedule", init_value=0.1, start_factor=0.0), 5,
    ),
    "linear_end_factor_negative": (
        spec("linear_factor_schedule", init_value=0.1, end_factor=-0.5), 5,
    ),
    "polynomial_power_negative": (
        spec("polynomial_decay_schedule", init_value=0.1, power=-1.0), 8,
    ),
    "cosine_t_max_0": (spec("cosine_annealing_schedule", init_value=0.1, t_max=0), 5),
    "cosine_t_max_negative": (
        spec("cosine_annealing_schedule", init_value=0.1, t_max=-4), 10,
    ),
    "cosine_eta_min_negative": (
        spec("cosine_annealing_schedule", init_value=0.1, t_max=5, eta_min=-0.01), 10,
    ),
    "warm_restarts_t_0_0": (
        spec("cosine_warm_restarts_schedule", init_value=0.1, t_0=0), 5,
    ),
    "warm_restarts_t_mult_0": (
        spec("cosine_warm_restarts_schedule", init_value=0.1, t_0=5, t_mult=0), 5,
    ),
    "warm_restarts_t_mult_float": (
        spec("cosine_warm_restarts_schedule", init_value=0.1, t_0=5, t_mult=1.5), 5,
    ),
    "cyclic_step_size_up_0": (
        spec("cyclic_schedule", base_lr=0.1, max_lr=1.0, step_size_up=0), 5,
    ),
    "cyclic_step_sizes_float": (
        spec("cyclic_schedule", base_lr=0.01, max_lr=0.1, step_size_up=2.5,
             step_size_down=1.5),
        10,
    ),
    "cyclic_mode_unknown": (
        spec("cyclic_schedule", base_lr=0.1, max_lr=1.0, mode="sine"), 5,
    ),
    "cyclic_exp_range_gamma_negative": (
        spec("cyclic_schedule", base_lr=0.01, max_lr=0.1, step_size_up=3,
             mode="exp_range", gamma=-0.5),
        8,
    ),
    "onecycle_total_0": (spec("onecycle_schedule", max_lr=0.1, total_steps=0), 5),
    "onecycle_pct_above_1": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=100, pct_start=1.2), 5,
    ),
    "onecycle_empty_first_phase": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=10, pct_start=0.1), 5,
    ),
    "onecycle_empty_first_phase_three_phase": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=20, pct_start=0.05,
             three_phase=True),
        5,
    ),
    "onecycle_anneal_unknown": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=100,
             anneal_strategy="cosine"),
        5,
    ),
    "onecycle_div_factor_0": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=100, div_factor=0.0), 5,
    ),
    "onecycle_final_div_factor_0": (
        spec("onecycle_schedule", max_lr=0.1, total_steps=100,
             final_div_factor=0.0),
        5,
    ),
    "sequential_decreasing_milestones": (
        spec("sequential_schedule",
             schedules=[spec("constant_factor_schedule", init_value=0.1,
                             factor=0.5, total_steps=2),
                        spec("exponential_schedule", init_value=0.1, gamma=0.5),
                        spec("step_schedule", init_value=0.1, step_size=2,
                             gamma=0.5)],
             milestones=[6, 3]),
        10,
    ),
    "sequential_milestone_count": (
        spec("sequential_schedule",
             schedules=[spec("exponential_schedule", init_value=0.1, gamma=0.5)] * 2,
             milestones=[]),
        5,
    ),
}


def torch_outcome(case, num_counts):
  """torch's exception on a case ("ZeroDivisionError: ..."), or its values."""
  try:
    return {"values": run(case, num_counts).tolist()}
  except Exception as error:  # pylint: disable=broad-except
    return {"error": f"{type(error).__name__}: {error}"}


ADAM_ONECYCLE = {"max_lr": 0.05, "total_steps": 40, "pct_start": 0.25,
                 "base_momentum": 0.8, "max_momentum": 0.95}


def adam_onecycle_trajectory():
  """torch Adam under OneCycleLR cycling betas[0]: gradients and parameters.

  The test feeds the same gradients to optax.adam with both schedules injected
  (learning_rate and b1) and compares the parameters after every update.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from torch.optim import lr_scheduler  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  steps = ADAM_ONECYCLE["total_steps"]
  grads = rng.normal(size=(steps, 3))
  param = torch.tensor(rng.normal(size=3), dtype=torch.float64, requires_grad=True)
  init = param.detach().numpy().copy()
  optimizer = torch.optim.Adam([param], lr=ADAM_ONECYCLE["max_lr"])
  scheduler = lr_scheduler.OneCycleLR(optimizer, **ADAM_ONECYCLE)
  params = []
  for grad in grads:
    param.grad = torch.tensor(grad, dtype=torch.float64)
    optimizer.step()
    scheduler.step()
    params.append(param.detach().numpy().copy())
  return {"adam_onecycle_grads": grads, "adam_onecycle_init": init,
          "adam_onecycle_params": np.asarray(params),
          "adam_onecycle_config": np.array(json.dumps(ADAM_ONECYCLE))}


LONG_RUN = {"init_value": 0.1, "t_max": 100, "eta_min": 0.0, "num_updates": 20_000,
            "every": 53}


def cosine_long_run():
  """CosineAnnealingLR stepped 20,000 times (its recursion's float drift).

  Stored every 53rd count (coprime to the period) to keep the file small.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from torch.optim import lr_scheduler  # pylint: disable=g-import-not-at-top
  param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
  optimizer = torch.optim.SGD([param], lr=LONG_RUN["init_value"])
  scheduler = lr_scheduler.CosineAnnealingLR(
      optimizer, T_max=LONG_RUN["t_max"], eta_min=LONG_RUN["eta_min"])
  values = []
  for _ in range(LONG_RUN["num_updates"]):
    values.append(optimizer.param_groups[0]["lr"])
    optimizer.step()
    scheduler.step()
  counts = np.arange(0, LONG_RUN["num_updates"], LONG_RUN["every"])
  return {"cosine_long_run_counts": counts,
          "cosine_long_run_values": np.asarray(values)[counts],
          "cosine_long_run_config": np.array(json.dumps(LONG_RUN))}


def main():
  # torch is imported only here and in the helpers, so that pytest's
  # --doctest-modules can collect this file without importing torch.
  import torch  # pylint: disable=g-import-not-at-top
  warnings.simplefilter("ignore")  # torch's deprecation chatter
  torch.manual_seed(0)
  arrays = {name: run(case, n) for name, (case, n) in CASES.items()}
  cases = {name: case for name, (case, _) in CASES.items()}
  rejected = {name: {"spec": case, **torch_outcome(case, n)}
              for name, (case, n) in REJECTED.items()}
  meta = (f"torch {torch.__version__}, numpy {np.__version__},"
          f" python {platform.python_version()}; written by"
          " tests/reference/gen_schedules.py")
  np.savez_compressed(OUT, meta=np.array(meta), cases=np.array(json.dumps(cases)),
                      rejected=np.array(json.dumps(rejected)),
                      **arrays, **adam_onecycle_trajectory(), **cosine_long_run())
  print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(arrays)} cases)")


if __name__ == "__main__":
  main()
