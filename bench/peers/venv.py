"""Builds and caches the peers' virtual environments, one per pinned requirements file.

The peers pin versions that clash with the project's own (.venv has torch 2.15 with
transformers 5.x; the peers need transformers 4.57, and infinity-emb needs numpy<2), so they
never go into .venv: each requirements file gets a venv of its own under
`~/.cache/rescore-sidecar/bench-peers/<hash of the file>/`, made with the base interpreter
(`python3 -m venv`). A changed file hashes differently and builds a new venv; the old one stays
until removed by hand.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

from rescore_sidecar.tools.localnode import file_lock

HERE = pathlib.Path(__file__).resolve().parent
CACHE = pathlib.Path(os.environ.get("RESCORE_BENCH_PEERS_CACHE",
                                    pathlib.Path.home() / ".cache" / "rescore-sidecar" / "bench-peers"))
READY = ".rescore-peer-ready"  # written last: a venv without it is half-built and is rebuilt


def base_python() -> str:
    """The interpreter this venv was made from (the system python3), not .venv's."""
    return getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable


def venv_dir(requirements: pathlib.Path) -> pathlib.Path:
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    return CACHE / f"{requirements.stem}-{digest}"


def ensure_venv(requirements: pathlib.Path, python: str | None = None) -> pathlib.Path:
    """Path of the venv's python for `requirements`, building the venv first if needed.

    Raises RuntimeError (with the log's path and tail) when venv creation or pip fails.
    """
    target = venv_dir(requirements)
    py = target / "bin" / "python"
    if (target / READY).exists():
        return py
    # Two bench runs starting together would otherwise pip-install into the same folder.
    with file_lock(target.with_suffix(".lock")):
        if (target / READY).exists():  # another run built it while we waited
            return py
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        log = target / "build.log"
        print(f"peers: building {target} from {requirements.name} (first run only: downloads torch, "
              f"a few GB; log {log})", file=sys.stderr, flush=True)
        started = time.monotonic()
        steps = [
            [python or base_python(), "-m", "venv", str(target)],
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--upgrade", "pip"],
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--retries", "5",
             "--timeout", "60", "-r", str(requirements)],
        ]
        with open(log, "a") as out:
            for step in steps:
                out.write(f"$ {' '.join(step)}\n")
                out.flush()
                if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                    tail = log.read_text(errors="replace").splitlines()[-5:]
                    raise RuntimeError(f"building {target} failed at `{' '.join(step[-2:])}` "
                                       f"(log {log}): {' | '.join(tail)}")
        (target / READY).write_text(f"{time.monotonic() - started:.0f}s\n")
        print(f"peers: built {target.name} in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return py


def versions(python: pathlib.Path, packages: list[str]) -> dict[str, str]:
    """Installed versions of `packages` in the venv of `python` (missing ones left out)."""
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for p in sys.argv[1:]:\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    done = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)
