"""The engine and sidecar an evaluation talks to: the user's own, or local ones started for the run.

Everything started here is registered on a `contextlib.ExitStack`, so it is stopped on normal exit,
on error and on Ctrl-C alike. SIGTERM is turned into KeyboardInterrupt while a run is active for
the same reason.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from typing import Iterator, Sequence

from rescore_sidecar.tools.waiting import WaitTimeout, wait_until

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


class ServiceError(RuntimeError):
    """An engine or sidecar could not be reached or started; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Engine:
    kind: str          # "opensearch" | "elasticsearch"
    version: str
    url: str
    started_here: bool

    def describe(self) -> str:
        where = "local node started for this run" if self.started_here else "your cluster"
        return f"{self.kind} {self.version} at {self.url} ({where})"

    def client(self, **kwargs):
        if self.kind == "opensearch":
            from opensearchpy import OpenSearch

            return OpenSearch(self.url, timeout=60, **kwargs)
        from elasticsearch import Elasticsearch

        return Elasticsearch(self.url, request_timeout=60, **kwargs)


def _get(url: str, timeout: float) -> tuple[dict, dict]:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return json.load(reply), {k.lower(): v for k, v in reply.headers.items()}


def probe_engine(url: str, timeout: float = 10.0) -> Engine:
    """Which engine answers at `url`, and its version.

    The root endpoint names the distribution, but minimal Elasticsearch installs lack it (it lives
    in the optional rest-root module); then the node info gives the version and Elasticsearch's
    `X-Elastic-Product` header tells the two apart.
    """
    base = url.rstrip("/")
    try:
        try:
            info, headers = _get(base + "/", timeout)
            version = info.get("version", {}) if isinstance(info, dict) else {}
            number, distribution = version.get("number"), version.get("distribution")
        except urllib.error.HTTPError:
            info, headers = _get(base + "/_nodes/_local?filter_path=nodes.*.version", timeout)
            nodes = list((info.get("nodes") or {}).values()) if isinstance(info, dict) else []
            number, distribution = (nodes[0].get("version") if nodes else None), None
    except Exception as exc:  # noqa: BLE001 - any failure means "not a usable engine here"
        raise ServiceError(f"no OpenSearch/Elasticsearch answering at {url}: {exc}") from None
    if not number:
        raise ServiceError(f"{url} answered, but not like OpenSearch/Elasticsearch: {str(info)[:200]}")
    if distribution is None:
        distribution = "elasticsearch" if headers.get("x-elastic-product") == "Elasticsearch" else "opensearch"
    kind = "opensearch" if distribution == "opensearch" else "elasticsearch"
    return Engine(kind, number, base, started_here=False)


def open_engine(stack: contextlib.ExitStack, url: str | None, kind: str, version: str | None,
                log=print) -> Engine:
    """The cluster at `url`, or a local `kind` node started now and stopped when `stack` closes."""
    if url:
        return probe_engine(url)
    from rescore_sidecar.tools import localnode

    log(f"starting a local {kind} node (first run downloads it from Maven Central) ...")
    try:
        node = localnode.start_node(kind, version, quiet=False)  # a first run shows the download's progress
    except localnode.EngineError as exc:
        raise ServiceError(f"could not start a local {kind}: {exc}") from None
    stack.callback(node.stop)
    return Engine(kind, node.version, node.url, started_here=True)


@dataclasses.dataclass(frozen=True)
class Sidecar:
    address: str
    started_here: bool
    models: tuple[str, ...] = ()   # names the sidecar serves (first = default), when known
    kinds: tuple[str, ...] = ()    # "cross-encoder" | "bi-encoder", parallel to `models`

    def describe(self) -> str:
        where = f"{self.address} ({'started for this run' if self.started_here else 'your sidecar'})"
        served = ", ".join(f"{m} ({k})" if k else m for m, k in zip(self.models, self.kinds or [""] * len(self.models)))
        return f"{where}; serving {served}" if served else where


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def list_models(address: str, timeout: float = 10.0) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(names, kinds) of the models the sidecar at `address` serves, default first."""
    import grpc

    from rescore_sidecar.proto.rescore.v1 import rescore_pb2, rescore_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = rescore_pb2_grpc.RerankerStub(channel).ListModels(rescore_pb2.ListModelsRequest(),
                                                                       timeout=timeout)
        except grpc.RpcError as exc:
            raise ServiceError(f"no sidecar answering at {address}: {exc.code().name} {exc.details()}") from None
    models = sorted(reply.models, key=lambda m: not m.is_default)
    kinds = {rescore_pb2.MODEL_KIND_CROSS_ENCODER: "cross-encoder", rescore_pb2.MODEL_KIND_BI_ENCODER: "bi-encoder"}
    return tuple(m.name for m in models), tuple(kinds.get(m.kind, "") for m in models)


def _serving(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def open_sidecar(stack: contextlib.ExitStack, address: str | None, models: Sequence[str] = (),
                 timeout: float = 300.0, extra_args: Sequence[str] = (), log=print) -> Sidecar:
    """The sidecar at `address`, or `python -m rescore_sidecar.tools serve` started now on a free loopback port.

    `models` are `[NAME=]SOURCE` values for the started sidecar's `--model`; none = its offline default.
    """
    if address:
        return Sidecar(address, False, *list_models(address))
    port = _free_port()
    cmd = [sys.executable, "-m", "rescore_sidecar.tools", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--metrics-port", "0", "--device", "cpu", "--drain-seconds", "0", *extra_args]
    for model in models:
        cmd += ["--model", model]
    log_file = tempfile.NamedTemporaryFile(prefix="rescore-eval-sidecar-", suffix=".log", delete=False)
    stack.callback(lambda: os.path.exists(log_file.name) and os.unlink(log_file.name))
    log(f"starting the sidecar ({', '.join(models) or 'offline default model all-MiniLM-L6-v2'}) ...")
    process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log_file.close()
    stack.callback(_stop_process, process)
    address = f"127.0.0.1:{port}"

    def failure(state: str) -> ServiceError:
        tail = "\n".join(pathlib.Path(log_file.name).read_text(errors="replace").splitlines()[-20:])
        return ServiceError(f"sidecar {state} before serving: {' '.join(cmd)}\n{tail}")

    def exited() -> None:
        if process.poll() is not None:
            raise failure(f"exited with status {process.returncode}")

    try:
        wait_until(lambda: _serving(address), timeout=timeout, what="sidecar health", check=exited,
                   first=0.2, longest=1.0)
    except WaitTimeout:
        raise failure("timed out") from None
    return Sidecar(address, True, *list_models(address))


def _stop_process(process: subprocess.Popen, grace_seconds: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so `finally`/ExitStack cleanup runs as on Ctrl-C."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
