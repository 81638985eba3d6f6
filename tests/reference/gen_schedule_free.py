"""Writes schedule_free.npz: float64 golden trajectories of PyPI schedulefree.

Run from the repository root (needs the `reference` extra):

    /work/venv/bin/python tests/reference/gen_schedule_free.py

Every case trains the same three small params (shapes (5,), (2, 3), ()) on a
fixed noisy quadratic, g_k(y) = h * (y - target) + noise[k], taking the
gradient at the optimizer's current params (y, as in training). The file holds
the problem (init, h, target, noise), and per case: its configuration as JSON,
the learning rate each step used (`lr`, as the torch param group had it before
the step, so a torch LR scheduler is reproduced exactly), y after every step
(`y`, flattened leaves concatenated) and x at the end (`x`, after
`optimizer.eval()`).
"""

import json
import math
import os
import platform

import numpy as np
import schedulefree
import torch

from schedule_free_problem import SHAPES, STEPS  # noqa: F401
from schedule_free_problem import problem as _problem
from schedule_free_problem import split as _split

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                    "schedule_free.npz")


def _lr_factor(k):
  # Rises, falls below its earlier peak, then rises above it: exercises the
  # running maximum of the learning rate in the averaging weight.
  return 0.6 + 0.4 * math.sin(0.09 * k) + 0.004 * k


# name -> (optimizer, hyperparameters, whether a LambdaLR scheduler runs)
CASES = {
    "sgd_default": ("sgd", dict(lr=0.2), False),
    "sgd_warmup_decay": ("sgd", dict(lr=0.3, warmup_steps=10,
                                     weight_decay=0.05), False),
    "sgd_r_power_b1": ("sgd", dict(lr=0.2, momentum=0.7, warmup_steps=5,
                                   r=0.5, weight_lr_power=1.0), False),
    "sgd_schedule": ("sgd", dict(lr=0.25, warmup_steps=8,
                                 weight_decay=0.01), True),
    "adamw_default": ("adamw", dict(lr=0.05), False),
    "adamw_warmup_decay": ("adamw", dict(lr=0.08, betas=(0.95, 0.99),
                                         eps=1e-6, warmup_steps=10,
                                         weight_decay=0.1), False),
    "adamw_r_power": ("adamw", dict(lr=0.05, betas=(0.9, 0.9), r=1.0,
                                    weight_lr_power=0.0), False),
    "adamw_schedule": ("adamw", dict(lr=0.06, warmup_steps=5,
                                     weight_decay=0.02), True),
    "radam_silent": ("radam", dict(lr=0.05, weight_decay=0.05), False),
    "radam_sgd_phase": ("radam", dict(lr=0.05, betas=(0.9, 0.99), r=0.5,
                                      silent_sgd_phase=False), False),
    "radam_b2_small_silent": ("radam", dict(lr=0.05, betas=(0.8, 0.9),
                                            weight_lr_power=1.0), False),
    "radam_b2_small_sgd": ("radam", dict(lr=0.05, betas=(0.8, 0.9),
                                         weight_decay=0.02,
                                         silent_sgd_phase=False), False),
    "radam_schedule": ("radam", dict(lr=0.05, betas=(0.9, 0.99)), True),
    "wrap_sgd": ("wrap_sgd", dict(lr=0.2, weight_decay_at_y=0.05), False),
    "wrap_sgd_l2": ("wrap_sgd", dict(lr=0.2, base_weight_decay=0.1, r=0.5,
                                     weight_lr_power=1.0), False),
    "wrap_adam": ("wrap_adam", dict(lr=0.05, b2=0.99, eps=1e-6,
                                    weight_decay_at_y=0.02), False),
    "wrap_adamw": ("wrap_adamw", dict(lr=0.05, b2=0.999, momentum=0.95,
                                      base_weight_decay=0.1), False),
    "wrap_adam_schedule": ("wrap_adam", dict(lr=0.05, b2=0.99), True),
}


def _make(kind, kwargs, params):
  kwargs = dict(kwargs)
  if kind == "sgd":
    return schedulefree.SGDScheduleFree(params, foreach=False, **kwargs)
  if kind == "adamw":
    return schedulefree.AdamWScheduleFree(params, foreach=False, **kwargs)
  if kind == "radam":
    return schedulefree.RAdamScheduleFree(params, foreach=False, **kwargs)
  wrapper_args = {key: kwargs.pop(key) for key in
                  ("momentum", "weight_decay_at_y", "r", "weight_lr_power")
                  if key in kwargs}
  lr = kwargs.pop("lr")
  weight_decay = kwargs.pop("base_weight_decay", 0.0)
  if kind == "wrap_sgd":
    base = torch.optim.SGD(params, lr=lr, momentum=0.0,
                           weight_decay=weight_decay, foreach=False)
  else:
    adam = torch.optim.AdamW if kind == "wrap_adamw" else torch.optim.Adam
    base = adam(params, lr=lr, betas=(0.0, kwargs.pop("b2")),
                eps=kwargs.pop("eps", 1e-8), weight_decay=weight_decay,
                foreach=False)
    # The wrapper puts z into the base's per-param state before the first
    # base step, so Adam's lazy init (on empty state) would never run.
    for p in params:
      base.state[p]["step"] = torch.tensor(0.0)
      base.state[p]["exp_avg"] = torch.zeros_like(p)
      base.state[p]["exp_avg_sq"] = torch.zeros_like(p)
  assert not kwargs, kwargs
  return schedulefree.ScheduleFreeWrapperReference(base, **wrapper_args)


def _run(kind, kwargs, scheduled, problem):
  params = [torch.tensor(a, dtype=torch.float64)
            for a in _split(problem["init"])]
  optimizer = _make(kind, kwargs, params)
  groups_owner = optimizer.base if kind.startswith("wrap") else optimizer
  scheduler = (torch.optim.lr_scheduler.LambdaLR(groups_owner, _lr_factor)
               if scheduled else None)
  h = _split(problem["h"])
  target = _split(problem["target"])
  optimizer.train()
  ys, lrs = [], []
  for k in range(STEPS):
    noise = _split(problem["noise"][k])
    for p, hi, ti, ni in zip(params, h, target, noise):
      p.grad = torch.tensor(hi * (p.detach().numpy() - ti) + ni)
    lrs.append(optimizer.param_groups[0]["lr"])
    optimizer.step()
    if scheduler is not None:
      scheduler.step()
    ys.append(np.concatenate([p.detach().numpy().ravel() for p in params]))
  optimizer.eval()
  x = np.concatenate([p.detach().numpy().ravel() for p in params])
  return np.array(ys), x, np.array(lrs)


def main():
  torch.set_default_dtype(torch.float64)
  problem = _problem()
  arrays = {f"problem/{key}": value for key, value in problem.items()}
  arrays["meta"] = np.array(
      f"torch {torch.__version__}, schedulefree 1.4.1, numpy "
      f"{np.__version__}, python {platform.python_version()}; "
      f"shapes {SHAPES}, {STEPS} steps; generated by "
      "tests/reference/gen_schedule_free.py"
  )
  for name, (kind, kwargs, scheduled) in CASES.items():
    ys, x, lrs = _run(kind, kwargs, scheduled, problem)
    assert np.all(np.isfinite(ys)), name
    arrays[f"{name}/config"] = np.array(json.dumps(
        dict(kind=kind, kwargs=kwargs, scheduled=scheduled)))
    arrays[f"{name}/y"] = ys
    arrays[f"{name}/x"] = x
    arrays[f"{name}/lr"] = lrs
  np.savez_compressed(PATH, **arrays)
  print(f"wrote {PATH} ({os.path.getsize(PATH)} bytes, {len(CASES)} cases)")


if __name__ == "__main__":
  main()
