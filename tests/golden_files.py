"""The Schedule-Free golden files' layout, shared by their test modules.

Each file (tests/reference/schedule_free*.npz) holds cases named
``<case>/config`` and the flattened leaves of three params of shapes
(5,), (2, 3) and () (tests/reference/schedule_free_problem.py writes them).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

REFERENCE = os.path.join(os.path.dirname(__file__), "reference")
SHAPES = {"a": (5,), "b": (2, 3), "c": ()}


def load(name):
  """The golden file ``name`` and its sorted case names."""
  golden = np.load(os.path.join(REFERENCE, name))
  cases = sorted(key[:-len("/config")] for key in golden.files
                 if key.endswith("/config"))
  return golden, cases


def split(flat):
  """A flat vector as the params dict of SHAPES."""
  out, start = {}, 0
  for name, shape in SHAPES.items():
    size = int(np.prod(shape))
    out[name] = flat[start:start + size].reshape(shape)
    start += size
  return out


def flat(tree):
  """The leaves of ``tree`` raveled and concatenated."""
  return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)])
