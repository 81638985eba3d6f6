"""Writes adabound.npz: golden AdaBound/AMSBound/AdaBoundW trajectories.

Run from the repository root with the reference extra installed:

    /work/venv/bin/python tests/reference/gen_adabound.py

The problem (shared with gen_lion.py): four float64 tensors, the gradient at
step t is ``scale * (p - target) + noise[t]`` with curvatures spread over four
decades so that, over the run, elements sit below, inside and above the bounds.
Each config's params after every step are saved, with the config as JSON.
"""

from __future__ import annotations

import importlib.metadata
import json
import os

import numpy as np

# torch and the reference packages are imported inside the functions that use
# them: pytest's --doctest-modules imports this file in the default test run,
# which must not need torch.

SEED = 0
STEPS = 150
SHAPES = ((4, 3), (5,), (2, 3, 2), ())
HERE = os.path.dirname(os.path.abspath(__file__))

CONFIGS = {
    "adabound_default": dict(variant="adabound"),
    "adabound_options": dict(
        variant="adabound", lr=1e-2, betas=(0.8, 0.99), final_lr=0.05,
        gamma=0.05, eps=1e-6, weight_decay=1e-2),
    "amsbound_weight_decay": dict(
        variant="adabound", amsbound=True, lr=3e-3, final_lr=0.2, gamma=0.02,
        weight_decay=5e-3),
    "adabound_exponential_lr": dict(
        variant="adabound", lr=1e-2, gamma=0.05,
        schedule=dict(kind="exponential", gamma=0.97)),
    "amsbound_step_lr": dict(
        variant="adabound", amsbound=True, lr=1e-2, gamma=0.05,
        schedule=dict(kind="step", step_size=40, gamma=0.3)),
    "adabound_masked_weight_decay": dict(
        variant="adabound", lr=1e-2, gamma=0.05, weight_decay=2e-2,
        decay_tensors=[0, 2]),
    "adaboundw": dict(
        variant="adaboundw", lr=1e-2, gamma=0.05, weight_decay=1e-3),
    "adaboundw_amsbound_exponential_lr_masked": dict(
        variant="adaboundw", amsbound=True, lr=5e-3, final_lr=0.3, gamma=0.1,
        weight_decay=5e-4, decay_tensors=[1, 3],
        schedule=dict(kind="exponential", gamma=0.98)),
}
DEFAULTS = dict(lr=1e-3, betas=(0.9, 0.999), final_lr=0.1, gamma=1e-3,
                eps=1e-8, weight_decay=0.0, amsbound=False, schedule=None,
                decay_tensors=None)


def make_problem(seed: int = SEED, steps: int = STEPS) -> dict[str, np.ndarray]:
  """Initial params, curvatures, targets and gradient noise, all float64."""
  rng = np.random.default_rng(seed)
  problem = {}
  for i, shape in enumerate(SHAPES):
    problem[f"init/{i}"] = rng.normal(size=shape)
    problem[f"target/{i}"] = rng.normal(size=shape)
    problem[f"scale/{i}"] = 10.0 ** rng.uniform(-3, 1, size=shape)
    noise_scale = 10.0 ** rng.uniform(-3, 0, size=shape)
    problem[f"noise/{i}"] = rng.normal(size=(steps, *shape)) * noise_scale
  return problem


def run_torch(problem, make_optimizer, config, steps: int = STEPS,
              observe=None) -> dict[str, np.ndarray]:
  """Runs a torch optimizer on the problem; returns params after each step.

  ``make_optimizer(param_groups)`` builds the optimizer; ``config`` gives the
  weight decay, which tensors it applies to, and the torch scheduler.
  """
  import torch  # pylint: disable=import-outside-toplevel
  params = [torch.nn.Parameter(torch.tensor(problem[f"init/{i}"]))
            for i in range(len(SHAPES))]
  decayed = config["decay_tensors"]
  if decayed is None:
    groups = [dict(params=params, weight_decay=config["weight_decay"])]
  else:
    groups = [
        dict(params=[p for i, p in enumerate(params) if i in decayed],
             weight_decay=config["weight_decay"]),
        dict(params=[p for i, p in enumerate(params) if i not in decayed],
             weight_decay=0.0),
    ]
  optimizer = make_optimizer(groups)
  schedule = config["schedule"]
  if schedule is None:
    scheduler = None
  elif schedule["kind"] == "exponential":
    scheduler = torch.optim.lr_scheduler.ExponentialLR(
        optimizer, schedule["gamma"])
  else:
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, schedule["step_size"], schedule["gamma"])
  history = [np.empty((steps, *shape)) for shape in SHAPES]
  for t in range(steps):
    for i, p in enumerate(params):
      target = torch.tensor(problem[f"target/{i}"])
      scale = torch.tensor(problem[f"scale/{i}"])
      noise = torch.tensor(problem[f"noise/{i}"][t])
      p.grad = scale * (p.detach() - target) + noise
    optimizer.step()
    if observe is not None:
      observe(optimizer)
    if scheduler is not None:
      scheduler.step()
    for i, p in enumerate(params):
      history[i][t] = p.detach().numpy()
  return {f"{i}": h for i, h in enumerate(history)}


def reference_adaboundw():
  """Returns the AdaBoundW class of the Luolc/AdaBound repository.

  That class (adabound/adabound.py in https://github.com/Luolc/AdaBound) is
  not in the PyPI release. It is AdaBound without the L2 term in the
  gradient, followed by ``p -= weight_decay * p_old`` (the weights before the
  step, not multiplied by the learning rate). This builds it on the released
  AdaBound with the same operations in the same order: ``p.add_(-step)``
  (AdaBound's own step with its weight decay set to 0), then
  ``p.sub_(p_old * weight_decay)``.
  """
  import adabound  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel

  class AdaBoundW(adabound.AdaBound):
    """AdaBound with decoupled weight decay, as the repository's class."""

    def step(self, closure=None):
      decays = []
      for group in self.param_groups:
        decays.append([(p, torch.mul(p.data, group["weight_decay"]))
                       for p in group["params"] if group["weight_decay"] != 0])
        group["decoupled_weight_decay"] = group["weight_decay"]
        group["weight_decay"] = 0
      loss = super().step(closure)
      for group, group_decays in zip(self.param_groups, decays):
        group["weight_decay"] = group.pop("decoupled_weight_decay")
        for p, decayed_weights in group_decays:
          p.data.sub_(decayed_weights)
      return loss

  return AdaBoundW


class BoundCounter:
  """Counts element-steps below, inside and above AdaBound's bounds.

  Evidence that the trajectories exercise both clips; recomputes the reference
  step size from its state after each step (not used for the trajectories).
  """

  def __init__(self):
    self.counts = np.zeros(3, dtype=np.int64)

  def __call__(self, optimizer):
    for group, base_lr in zip(optimizer.param_groups, optimizer.base_lrs):
      beta1, beta2 = group["betas"]
      for p in group["params"]:
        state = optimizer.state[p]
        t = state["step"]
        v = state["max_exp_avg_sq"] if group["amsbound"] else state[
            "exp_avg_sq"]
        step_size = (group["lr"] * np.sqrt(1 - beta2**t) / (1 - beta1**t)
                     / (v.sqrt().numpy() + group["eps"]))
        final_lr = group["final_lr"] * group["lr"] / base_lr
        lower = final_lr * (1 - 1 / (group["gamma"] * t + 1))
        upper = final_lr * (1 + 1 / (group["gamma"] * t))
        self.counts += [np.sum(step_size < lower),
                        np.sum((step_size >= lower) & (step_size <= upper)),
                        np.sum(step_size > upper)]


def main() -> None:
  import adabound  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel

  torch.manual_seed(SEED)
  problem = make_problem()
  out = dict(problem)
  summary = {}
  for name, overrides in CONFIGS.items():
    config = {**DEFAULTS, **overrides}
    if config["variant"] == "adaboundw":
      optimizer_class = reference_adaboundw()
    else:
      optimizer_class = adabound.AdaBound

    def make_optimizer(groups, config=config, optimizer_class=optimizer_class):
      return optimizer_class(
          groups, lr=config["lr"], betas=config["betas"],
          final_lr=config["final_lr"], gamma=config["gamma"],
          eps=config["eps"], amsbound=config["amsbound"])

    counter = BoundCounter()
    trajectory = run_torch(problem, make_optimizer, config, observe=counter)
    for key, value in trajectory.items():
      out[f"{name}/params/{key}"] = value
    out[f"{name}/config"] = np.array(json.dumps(config))
    below, inside, above = counter.counts.tolist()
    summary[name] = dict(below_lower=below, inside=inside, above_upper=above)
    print(f"{name}: element-steps below/inside/above bounds "
          f"{below}/{inside}/{above}")
  out["bound_counts"] = np.array(json.dumps(summary))
  out["meta"] = np.array(
      f"torch {torch.__version__}, adabound "
      f"{importlib.metadata.version('adabound')}, numpy {np.__version__};"
      f" generated by tests/reference/gen_adabound.py; seed {SEED},"
      f" {STEPS} steps; AdaBoundW reimplemented on the PyPI AdaBound")
  np.savez_compressed(os.path.join(HERE, "adabound.npz"), **out)


if __name__ == "__main__":
  main()
