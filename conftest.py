"""Test-suite set-up shared by tests/ and the doctests in optfree/.

Eight virtual CPU devices let the sharding and pmap tests run on any machine;
the flag must be set before JAX is first imported.
"""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# The golden-data generators import torch, which the default test run lacks.
collect_ignore = ["tests/reference"]

import jax  # noqa: E402  (must follow the flag)
import pytest  # noqa: E402


@pytest.fixture
def x64():
  """Runs the test with float64 enabled (the golden-trajectory comparisons)."""
  with jax.enable_x64(True):
    yield
