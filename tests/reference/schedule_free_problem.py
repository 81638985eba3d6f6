"""The noisy quadratic every Schedule-Free golden trajectory trains on.

Shared by gen_schedule_free.py, gen_schedule_free_plus.py and
gen_schedule_free_algoperf.py (numpy only, so the ports run without torch):
three params of shapes (5,), (2, 3) and (), gradients
g_k(y) = h * (y - target) + noise[k] taken at the optimizer's own params.
"""

import numpy as np

STEPS = 120
SHAPES = ((5,), (2, 3), ())


def problem(seed=0):
  """The flat initial params, curvatures, targets and per-step noise."""
  rng = np.random.default_rng(seed)
  size = sum(int(np.prod(s)) for s in SHAPES)
  return dict(
      init=rng.normal(size=size),
      h=rng.uniform(0.5, 2.0, size=size),
      target=rng.normal(size=size),
      noise=0.3 * rng.normal(size=(STEPS, size)),
  )


def split(flat):
  """The flat vector as a list of arrays of SHAPES."""
  out, start = [], 0
  for shape in SHAPES:
    n = int(np.prod(shape))
    out.append(flat[start:start + n].reshape(shape))
    start += n
  return out
