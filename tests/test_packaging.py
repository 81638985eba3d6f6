"""The built wheel, installed outside the repository, holds every module.

An editable install (what the tests run on) imports from the source tree and
hides a module the wheel lacks; a user installing from PyPI, git or a wheel
gets only what the wheel holds.
"""

import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("wheel")
  # Built from a copy: setuptools reuses a build/ folder in the source tree,
  # whose stale files would hide a module missing from the package list.
  source = tmp_path_factory.mktemp("source") / "optfree"
  shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
      ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__"))
  subprocess.run(
      [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
       "-w", str(out), str(source)],
      check=True, capture_output=True)
  (path,) = out.glob("optfree-*.whl")
  return path


def test_wheel_holds_every_module_of_the_package(wheel):
  names = set(zipfile.ZipFile(wheel).namelist())
  sources = sorted(
      path.relative_to(ROOT).as_posix()
      for path in (ROOT / "optfree").rglob("*.py"))
  assert sources
  assert [path for path in sources if path not in names] == []


def test_wheel_imports_every_public_module_in_a_fresh_venv(wheel, tmp_path):
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  python = venv / "bin" / "python"
  # The dependencies come from this environment's site-packages, added as a
  # plain path: its .pth files (the editable install of optfree) are not run.
  site = subprocess.run(
      [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
      check=True, capture_output=True, text=True).stdout.strip()
  pathlib.Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
  subprocess.run(
      [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
      check=True, capture_output=True)
  script = (
      "import importlib, pathlib, optfree\n"
      "assert 'site-packages' in optfree.__file__, optfree.__file__\n"
      "for name in ('optfree', 'optfree.schedules', 'optfree.flax',"
      " 'optfree.demo', 'optfree.__main__'):\n"
      "  importlib.import_module(name)\n"
      "missing = [n for n in optfree.__all__ if not hasattr(optfree, n)]\n"
      "assert not missing, missing\n"
      "print(pathlib.Path(optfree.__file__).parent)\n")
  result = subprocess.run(
      [str(python), "-c", script], cwd=tmp_path, capture_output=True, text=True,
      env={"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 0, result.stderr
  assert pathlib.Path(result.stdout.strip()).is_relative_to(venv)
