"""The peers as bench systems: `run(requests) -> (latencies, wall)`, like the baseline and the sidecar.

Each peer lives in its own process on a peer venv (venv.py): the sentence-transformers ones in a
worker (worker.py) driven over JSON lines, infinity-emb as its own REST server called by N threads.
Anything that goes wrong raises PeerError, which the bench prints and then skips that peer.
"""
from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import pathlib
import select
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

from .venv import ensure_venv, versions

HERE = pathlib.Path(__file__).resolve().parent
ST_REQUIREMENTS = HERE / "requirements-st.txt"
INFINITY_REQUIREMENTS = HERE / "requirements-infinity.txt"


class PeerError(RuntimeError):
    """A peer could not be built, loaded or run."""


@dataclass(frozen=True)
class PeerSpec:
    label: str           # the table's system column
    requirements: pathlib.Path


PEERS: dict[str, PeerSpec] = {
    "openvino": PeerSpec("CrossEncoder openvino", ST_REQUIREMENTS),
    "onnx-int8": PeerSpec("CrossEncoder onnx dynamic quant", ST_REQUIREMENTS),
    "openvino-int8": PeerSpec("CrossEncoder openvino static quant", ST_REQUIREMENTS),
    "infinity": PeerSpec("infinity-emb torch (REST /rerank)", INFINITY_REQUIREMENTS),
}


def _log_tail(log: pathlib.Path, lines: int = 3) -> str:
    try:
        return " | ".join(line.strip() for line in log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _own_model_copy(model_dir: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    # Peers write their exports into the model folder, and so does the sidecar (openvino/): each
    # gets a clean copy of the checkpoint so no system ever loads another's artefact.
    shutil.copytree(model_dir, dest, ignore=shutil.ignore_patterns("openvino", "onnx"))
    return dest


class WorkerPeer:
    """A sentence-transformers CrossEncoder in a worker process, one request at a time."""

    def __init__(self, name: str, python: pathlib.Path, workdir: pathlib.Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        with open(self.log, "w") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([str(python), str(HERE / "worker.py")], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)

    def _call(self, message: dict, timeout: float) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise PeerError(f"worker exited ({_log_tail(self.log)})") from None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise PeerError(f"no reply in {timeout:.0f}s (log {self.log})")
        line = self.proc.stdout.readline()
        if not line:
            raise PeerError(f"worker exited ({_log_tail(self.log)})")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise PeerError(f"{reply.get('error')} (log {self.log})")
        return reply

    def load(self, model_dir: pathlib.Path, batch_size: int, calibration: list[tuple[str, str]]) -> dict:
        """{"precision", "versions", "load_s"}: exports and quantizes first where the peer needs it."""
        return self._call({"op": "load", "peer": self.name, "model": str(model_dir), "batch_size": batch_size,
                           "calibration": calibration}, timeout=1800)

    def run(self, requests: list[tuple[str, list[str]]]) -> tuple[list[float], float]:
        reply = self._call({"op": "run", "requests": requests}, timeout=3600)
        return reply["latencies"], reply["wall"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()  # end of stdin ends the worker
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class InfinityPeer:
    """An `infinity_emb v2 --engine torch` server on loopback, `clients` concurrent POST /rerank."""

    def __init__(self, python: pathlib.Path, model_dir: pathlib.Path, workdir: pathlib.Path,
                 clients: int, batch_size: int) -> None:
        self.clients = clients
        self.log = workdir / "infinity.log"
        with socket.socket() as probe:  # a free loopback port
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        # Offline: no hub look-ups, no telemetry calls (on a box without internet they only time out).
        env = dict(os.environ, HF_HUB_OFFLINE="1", INFINITY_ANONYMOUS_USAGE_STATS="0", DO_NOT_TRACK="1")
        command = [str(python.parent / "infinity_emb"), "v2", "--model-id", str(model_dir), "--engine", "torch",
                   "--device", "cpu", "--dtype", "float32", "--batch-size", str(batch_size),
                   "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._local = threading.local()

    def wait_ready(self, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerError(f"infinity_emb exited {self.proc.returncode} ({_log_tail(self.log)})")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(1)
        raise PeerError(f"infinity_emb not ready in {timeout:.0f}s (log {self.log})")

    def _call(self, item: tuple[str, list[str]]) -> float:
        # One keep-alive connection per client thread, as a pooled HTTP client would hold.
        conn = getattr(self._local, "conn", None) or http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        self._local.conn = conn
        query, docs = item
        body = json.dumps({"query": query, "documents": docs, "return_documents": False})
        t0 = time.perf_counter()
        conn.request("POST", "/rerank", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - t0
        if response.status != 200:
            raise PeerError(f"/rerank answered {response.status}: {payload[:200]!r}")
        return elapsed

    def run(self, requests: list[tuple[str, list[str]]]) -> tuple[list[float], float]:
        started = time.perf_counter()
        try:
            with concurrent.futures.ThreadPoolExecutor(self.clients) as pool:
                latencies = list(pool.map(self._call, requests))
        except (OSError, http.client.HTTPException) as exc:
            raise PeerError(f"/rerank failed: {exc} ({_log_tail(self.log)})") from exc
        return latencies, time.perf_counter() - started

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_peer(name: str, model_dir: pathlib.Path, workdir: pathlib.Path, *, batch_size: int, clients: int,
               calibration: list[tuple[str, str]], python: str | None = None
               ) -> tuple[WorkerPeer | InfinityPeer, str, int, dict[str, str]]:
    """(system, precision label, clients, versions) for one peer, ready to run. Raises PeerError."""
    spec = PEERS[name]
    try:
        peer_python = ensure_venv(spec.requirements, python)
    except (RuntimeError, OSError) as exc:
        raise PeerError(f"peer venv: {exc}") from exc
    workdir.mkdir(parents=True, exist_ok=True)
    own_model = _own_model_copy(model_dir, workdir / f"model-{name}")
    if name == "infinity":
        server = InfinityPeer(peer_python, own_model, workdir, clients, batch_size)
        try:
            server.wait_ready()
        except PeerError:
            server.close()
            raise
        try:
            found = versions(peer_python, ["infinity-emb", "sentence-transformers", "transformers", "torch"])
        except (OSError, subprocess.SubprocessError, ValueError):
            found = {}
        return server, "fp32", clients, found
    worker = WorkerPeer(name, peer_python, workdir)
    try:
        loaded = worker.load(own_model, batch_size, calibration)
    except PeerError:
        worker.close()
        raise
    return worker, loaded["precision"], 1, loaded["versions"]
