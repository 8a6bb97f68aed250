"""Building the wheel is quiet and complete: no setuptools warning (a newcomer reads a page-long
BuildBackendWarning as an error), and the sample collection the demo needs is inside."""
from __future__ import annotations

import importlib.metadata
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def _setuptools_ok() -> bool:
    """Whether this interpreter's setuptools meets pyproject's build requirement (then no download)."""
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= 77
    except importlib.metadata.PackageNotFoundError:
        return False


def test_wheel_builds_without_setuptools_warnings(tmp_path):
    # A copy of the sources, as tests/integration/test_client_install.py does: no build/ left in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("sidecar", "connectors", "tools", "proto"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # -v: pip shows the backend's output (warnings included) only when verbose. Without isolation
    # when this interpreter's setuptools is new enough: offline and a few seconds.
    isolation = ["--no-build-isolation"] if _setuptools_ok() else []
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--disable-pip-version-check",
                           *isolation, "-w", str(tmp_path / "dist"), str(source)],
                          capture_output=True, text=True, timeout=280)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    warnings = [line for line in output.splitlines() if "Warning" in line and "setuptools" in line.lower()
                or "BuildBackendWarning" in line or "SetuptoolsDeprecationWarning" in line]
    assert not warnings, "\n".join(warnings)
    wheel, = (tmp_path / "dist").glob("rescore_sidecar-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "rescore_sidecar/tools/eval/sample_data/cranfield-sample/corpus.jsonl.gz" in names
