"""Fixtures shared by every test directory: small seeded models built on disk once per run."""
from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import pytest

from rescore_sidecar.tools.seeded_models import build_model


# Each folder's tests carry its marker, so `-m "not integration and not deploy"` is the fast set
# wherever a test file lives and whether or not it remembered its own `pytestmark`.
_FOLDER_MARKS = {"integration": pytest.mark.integration, "deploy": pytest.mark.deploy}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for part in item.path.parts:
            if part in _FOLDER_MARKS:
                item.add_marker(_FOLDER_MARKS[part])


_jaeger_prebuild: subprocess.Popen | None = None


def pytest_collection_finish(session):
    """On a machine without Jaeger built yet (minutes on 2 cores, once), a run that will use the
    `jaeger` fixture starts the build now, niced, in the background: it overlaps the tests collected
    before the tracing ones, and the fixture waits on the build's lock instead of starting its own."""
    global _jaeger_prebuild
    if not any("jaeger" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    from rescore_sidecar.tools import jaeger

    if jaeger.cached_binary() or shutil.which("go") is None:
        return
    jaeger.cache_dir().mkdir(parents=True, exist_ok=True)
    log_path = jaeger.cache_dir() / "prebuild.log"
    with open(log_path, "ab") as log:
        _jaeger_prebuild = subprocess.Popen([sys.executable, "-m", "rescore_sidecar.tools.jaeger", "build"],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"jaeger {jaeger.VERSION}: building from Go modules in the background (log: {log_path})")


def pytest_sessionfinish(session):
    """A background Jaeger build still running when the run ends (its tests deselected or stopped
    early) is stopped with its `go` children, not left behind."""
    if _jaeger_prebuild is not None and _jaeger_prebuild.poll() is None:
        try:
            os.killpg(_jaeger_prebuild.pid, signal.SIGTERM)
            _jaeger_prebuild.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(_jaeger_prebuild.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_cross_encoder(models_dir) -> pathlib.Path:
    """Single-logit BERT cross-encoder, random weights (seed 0), real MiniLM tokenizer."""
    return build_model(models_dir / "tiny-ce", kind="cross-encoder", arch="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_two_label_cross_encoder(models_dir) -> pathlib.Path:
    return build_model(models_dir / "tiny-ce2", kind="cross-encoder", arch="tiny", num_labels=2, seed=1)


@pytest.fixture(scope="session")
def tiny_bi_encoder(models_dir) -> pathlib.Path:
    return build_model(models_dir / "tiny-bi", kind="bi-encoder", arch="tiny", seed=2)


@pytest.fixture(scope="session")
def short_cross_encoder(models_dir) -> pathlib.Path:
    """Cross-encoder whose tokenizer caps pairs at 64 tokens, to exercise truncation cheaply."""
    return build_model(models_dir / "tiny-ce-64", kind="cross-encoder", arch="tiny", seed=3, max_length=64)


@pytest.fixture(scope="session")
def tiny_xlmr_cross_encoder(models_dir) -> pathlib.Path:
    """XLM-R-type cross-encoder (type_vocab_size 1) with an XLM-R tokenizer that emits no segment ids."""
    return build_model(models_dir / "tiny-xlmr-ce", kind="cross-encoder", arch="tiny-xlmr", seed=4)
