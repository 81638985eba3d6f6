"""The sdist and wheel, built as a release is, install and work on their own.

An editable install (what the tests run on) imports from the source tree and
hides a module the wheel lacks; a user installing from PyPI, git or a wheel
gets only what the wheel holds. The distributions are built as `python -m
build` builds them for a release: the sdist first, then the wheel from the
unpacked sdist, so the sdist must hold everything the build needs.
"""

import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest

import optfree
from tests.test_readme import _quickstart_source

ROOT = pathlib.Path(__file__).resolve().parent.parent
PUBLIC_MODULES = (
    "optfree", "optfree.schedules", "optfree.flax", "optfree.demo",
    "optfree.__main__",
)


@pytest.fixture(scope="session")
def distributions(tmp_path_factory) -> dict[str, pathlib.Path]:
  """The sdist and the wheel built from it, from a copy of this checkout."""
  out = tmp_path_factory.mktemp("dist")
  # Built from a copy: setuptools reuses a build/ folder in the source tree,
  # whose stale files would hide a module missing from the package list.
  source = tmp_path_factory.mktemp("source") / "optfree"
  shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
      ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__",
      ".mypy_cache", "_build"))
  # No isolation: the build requirements come from the dev extra, installed
  # here, so the test needs no network.
  subprocess.run(
      [sys.executable, "-m", "build", "--no-isolation", "-o", str(out),
       str(source)],
      check=True, capture_output=True)
  (sdist,) = out.glob("optfree-*.tar.gz")
  (wheel,) = out.glob("optfree-*.whl")
  return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="session")
def wheel(distributions) -> pathlib.Path:
  return distributions["wheel"]


def _dependencies_without_optfree(directory: pathlib.Path) -> pathlib.Path:
  """This environment's packages, less optfree's own install, as one folder.

  Links to the entries of site-packages except optfree's metadata and
  editable-install hooks, so that the venv finds the dependencies but counts
  optfree as installed only once something installs it.
  """
  directory.mkdir()
  for entry in pathlib.Path(sysconfig.get_paths()["purelib"]).iterdir():
    if "optfree" not in entry.name.lower() and entry.suffix != ".pth":
      (directory / entry.name).symlink_to(entry)
  return directory


def _make_venv(directory: pathlib.Path) -> pathlib.Path:
  """A new virtual environment without optfree; returns its python.

  The dependencies come from this environment's site-packages, added as a
  plain path (see _dependencies_without_optfree): nothing is downloaded.
  """
  venv = directory / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  python = venv / "bin" / "python"
  site = subprocess.run(
      [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
      check=True, capture_output=True, text=True).stdout.strip()
  dependencies = _dependencies_without_optfree(directory / "dependencies")
  pathlib.Path(site, "dependencies.pth").write_text(f"{dependencies}\n")
  return python


@pytest.fixture
def fresh_venv(tmp_path) -> pathlib.Path:
  return _make_venv(tmp_path)


@pytest.fixture(scope="module")
def installed_venv(wheel, tmp_path_factory) -> pathlib.Path:
  """A fresh venv into which the wheel is installed, as pip installs it."""
  python = _make_venv(tmp_path_factory.mktemp("installed"))
  outside = tmp_path_factory.mktemp("outside")
  missing = _run(python, "import importlib.util; print(importlib.util.find_spec('optfree'))",
                 outside)
  assert missing.stdout.strip() == "None", missing
  subprocess.run(
      [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
       str(wheel)],
      check=True, capture_output=True)
  return python


def _run(python: pathlib.Path, script: str, cwd: pathlib.Path):
  """Runs a script in the venv with nothing of this checkout on the path."""
  return subprocess.run(
      [str(python), "-c", script], cwd=cwd, capture_output=True, text=True,
      env={"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"})


def test_wheel_holds_every_module_of_the_package(wheel):
  names = set(zipfile.ZipFile(wheel).namelist())
  sources = sorted(
      path.relative_to(ROOT).as_posix()
      for path in (ROOT / "optfree").rglob("*.py"))
  assert sources
  assert [path for path in sources + ["optfree/py.typed"]
          if path not in names] == []
  assert f"optfree-{optfree.__version__}.dist-info/licenses/LICENSE" in names


def test_sdist_holds_what_the_build_and_the_license_need(distributions):
  prefix = f"optfree-{optfree.__version__}/"
  names = {name.removeprefix(prefix)
           for name in tarfile.open(distributions["sdist"]).getnames()}
  needed = ["pyproject.toml", "README.md", "LICENSE", "optfree/py.typed"] + [
      path.relative_to(ROOT).as_posix()
      for path in (ROOT / "optfree").rglob("*.py")]
  assert [name for name in needed if name not in names] == []


def test_version_is_written_once_and_built_into_the_metadata(distributions):
  pyproject = (ROOT / "pyproject.toml").read_text()
  assert not re.search(r"^version\s*=\s*[\"']", pyproject, re.M)
  assert re.search(r"^dynamic = \[\"version\"\]", pyproject, re.M)
  assert re.fullmatch(r"\d+\.\d+\.\d+", optfree.__version__)
  for path in distributions.values():
    assert path.name.startswith(f"optfree-{optfree.__version__}")
  metadata = zipfile.ZipFile(distributions["wheel"]).read(
      f"optfree-{optfree.__version__}.dist-info/METADATA").decode()
  assert f"\nVersion: {optfree.__version__}\n" in metadata
  assert "\nLicense-Expression: Apache-2.0\n" in metadata


def test_license_is_the_apache_2_text():
  text = (ROOT / "LICENSE").read_text()
  assert "Apache License\n                           Version 2.0, January 2004" in text
  assert "END OF TERMS AND CONDITIONS" in text


def test_distributions_pass_twine_check(distributions):
  result = subprocess.run(
      [sys.executable, "-m", "twine", "check", "--strict",
       *map(str, distributions.values())],
      capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr
  assert result.stdout.count("PASSED") == 2, result.stdout


def test_wheel_imports_every_public_module_in_a_fresh_venv(
    installed_venv, tmp_path):
  script = (
      "import importlib, importlib.metadata, pathlib, sys, optfree\n"
      f"for name in {PUBLIC_MODULES!r}:\n"
      "  importlib.import_module(name)\n"
      "missing = [n for n in optfree.__all__ if not hasattr(optfree, n)]\n"
      "assert not missing, missing\n"
      "assert importlib.metadata.version('optfree') == optfree.__version__\n"
      "print(pathlib.Path(optfree.__file__).parent)\n")
  result = _run(installed_venv, script, tmp_path)
  assert result.returncode == 0, result.stderr
  assert pathlib.Path(result.stdout.strip()).is_relative_to(
      installed_venv.parent.parent)


def test_readme_quickstart_runs_from_the_installed_wheel(
    installed_venv, tmp_path):
  script = (
      "import pathlib, sys, optfree\n"
      "assert pathlib.Path(optfree.__file__).is_relative_to(sys.prefix)\n"
      + _quickstart_source())
  result = _run(installed_venv, script, tmp_path)
  assert result.returncode == 0, result.stderr
  # What tests/test_readme.py checks of the same block: it trains.
  losses = [float(v) for v in re.findall(r"\d+\.\d+", result.stdout)]
  assert len(losses) == 2 and max(losses) < 0.25, result.stdout
