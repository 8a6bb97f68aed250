"""Jaeger all-in-one on loopback, a real tracing backend for tests (OTLP in, query API out).

No binary download site is reachable from CI, only the Go module proxy, so the `jaeger` program
(v2, the OpenTelemetry Collector based all-in-one) is compiled from its Go module the first time
(several minutes on 2 cores) and cached outside the repository, once per machine:
`${RESCORE_CACHE_DIR:-~/.cache/rescore-sidecar}/jaeger/v1.75.0/jaeger`. A file lock keeps parallel
callers from building twice; the binary appears by an atomic rename, never half-written.

    with jaeger_process() as jaeger:
        exporter = OTLPSpanExporter(endpoint=jaeger.otlp_grpc_endpoint, insecure=True)
        ...
        jaeger.traces("my-service")          # GET /api/traces?service=my-service

`python -m rescore_sidecar.tools.jaeger build` builds (or finds) it and prints its path.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, Iterator, Sequence

from rescore_sidecar.tools.localnode import _terminate, file_lock, free_port
from rescore_sidecar.tools.waiting import WaitTimeout, wait_until

VERSION = "v1.75.0"
MODULE = "github.com/jaegertracing/jaeger/cmd/jaeger"


class JaegerUnavailable(RuntimeError):
    """Jaeger cannot be built on this machine (no Go toolchain, the build failed): tests skip."""


class JaegerError(RuntimeError):
    """A built Jaeger did not start or answer."""


def cache_dir(version: str = VERSION) -> pathlib.Path:
    root = os.environ.get("RESCORE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "rescore-sidecar")
    return pathlib.Path(root) / "jaeger" / version


def cached_binary(version: str = VERSION) -> pathlib.Path | None:
    path = cache_dir(version) / "jaeger"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def ensure_jaeger(version: str = VERSION, *, progress: Callable[[str], None] | None = _stderr,
                  timeout: float = 3600.0, nice: int = 10) -> pathlib.Path:
    """The cached binary, built from Go modules first if missing. Raises JaegerUnavailable with the
    reason (and the build log's tail) when it cannot be built here."""
    found = cached_binary(version)
    if found:
        return found
    go = shutil.which("go")
    if go is None:
        raise JaegerUnavailable(f"jaeger {version} is not built ({cache_dir(version)}) and `go` is not installed")
    dest = cache_dir(version)
    with file_lock(dest / ".lock"):
        found = cached_binary(version)  # another process may have built it while we waited
        if found:
            return found
        for stale in dest.glob(".build.*"):  # left by a build that was killed; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        staging = pathlib.Path(tempfile.mkdtemp(dir=dest, prefix=".build."))
        try:
            _build(go, version, staging, progress or (lambda _: None), timeout, nice)
            os.replace(staging / "jaeger", dest / "jaeger")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest / "jaeger"


def _build(go: str, version: str, workdir: pathlib.Path, progress: Callable[[str], None],
           timeout: float, nice: int) -> None:
    """A throwaway module that requires jaeger as a tool (`go get -tool`), then `go build` of it."""
    env = {**os.environ, "GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0", "GOWORK": "off"}
    steps = [
        ("go mod init", [go, "mod", "init", "rescore-sidecar/jaeger-build"]),
        (f"go get -tool {MODULE}@{version} (downloads modules)", [go, "get", "-tool", f"{MODULE}@{version}"]),
        ("go build (compiles, the long part)", [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", "jaeger", MODULE]),
    ]
    log = workdir / "build.log"
    started = time.monotonic()
    progress(f"jaeger: building {MODULE}@{version} from Go modules, once per machine (several minutes on 2 cores)")
    for what, argv in steps:
        step_start = time.monotonic()
        progress(f"jaeger: {what}")
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, preexec_fn=lambda: os.nice(nice))
            while True:
                try:
                    code = proc.wait(timeout=30)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() - started > timeout:
                        proc.kill()
                        proc.wait()
                        raise JaegerUnavailable(f"jaeger build: {what} still running after {timeout:.0f} s") from None
                    progress(f"jaeger: {what}: {time.monotonic() - step_start:.0f} s so far")
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise JaegerUnavailable(f"jaeger build failed at `{' '.join(argv)}` (exit {code}):\n{tail}")
        progress(f"jaeger: {what}: done in {time.monotonic() - step_start:.0f} s")
    progress(f"jaeger: built in {time.monotonic() - started:.0f} s -> {cache_dir(version) / 'jaeger'}")


# --------------------------------------------------------------------------- running

def config_yaml(*, otlp_grpc: int, otlp_http: int, query_http: int, query_grpc: int) -> str:
    """The all-in-one pipeline (OTLP receiver -> in-memory store -> query API) on the given loopback
    ports, and nothing else: the built-in config also opens fixed ports (8888 metrics, 5778 sampling,
    14250 Jaeger gRPC, 9411 Zipkin, ...) that would collide between parallel test runs."""
    return f"""\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    # Its own traces would go to the default OTLP address (127.0.0.1:4317: someone else's collector,
    # or nobody, and then a 10 s export timeout on every stop).
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:{query_http}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp_grpc}
      http:
        endpoint: 127.0.0.1:{otlp_http}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclasses.dataclass
class JaegerProcess:
    """A running Jaeger. `otlp_grpc_endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT takes."""

    binary: pathlib.Path
    otlp_grpc_port: int
    otlp_http_port: int
    query_port: int
    workdir: pathlib.Path
    process: subprocess.Popen | None = dataclasses.field(default=None, repr=False)

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_grpc_port}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_http_port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    @property
    def log_path(self) -> pathlib.Path:
        return self.workdir / "jaeger.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _get(self, path: str, params: dict | None = None, timeout: float = 5.0) -> dict:
        url = self.query_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())

    def services(self) -> list[str]:
        return self._get("/api/services").get("data") or []

    def traces(self, service: str, **params: str | int) -> list[dict]:
        """The query API's traces with a span of `service` (Jaeger JSON: traceID, spans, processes)."""
        return self._get("/api/traces", {"service": service, "limit": 100, **params}).get("data") or []

    def trace(self, trace_id: str) -> dict:
        data = self._get(f"/api/traces/{trace_id}").get("data") or []
        if not data:
            raise JaegerError(f"trace {trace_id} not found")
        return data[0]

    def ready(self) -> bool:
        if not _port_open(self.otlp_grpc_port):
            return False
        try:
            self.services()
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return True

    def start(self, timeout: float = 60.0) -> "JaegerProcess":
        config = self.workdir / "config.yaml"
        config.write_text(config_yaml(otlp_grpc=self.otlp_grpc_port, otlp_http=self.otlp_http_port,
                                      query_http=self.query_port, query_grpc=free_port()))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([str(self.binary), "--config", str(config)], cwd=self.workdir,
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

        def exited() -> None:
            if self.process is not None and self.process.poll() is not None:
                raise JaegerError(f"jaeger exited with {self.process.returncode} before it was ready:\n{self.log_tail()}")

        try:
            wait_until(self.ready, timeout=timeout, what="jaeger", check=exited, first=0.1, longest=0.5)
        except WaitTimeout:
            self.stop()
            raise JaegerError(f"jaeger not ready after {timeout:.0f} s:\n{self.log_tail()}") from None
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM (the collector flushes and exits), SIGKILL after `grace_seconds`."""
        if self.process is not None:
            _terminate(self.process.pid, self.process, grace_seconds)


@contextlib.contextmanager
def jaeger_process(binary: pathlib.Path | None = None, *, timeout: float = 60.0) -> Iterator[JaegerProcess]:
    """Jaeger (built first if need be) on free loopback ports; stopped and its folder removed on exit."""
    binary = binary or ensure_jaeger()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="jaeger-"))
    proc = JaegerProcess(binary, free_port(), free_port(), free_port(), workdir)
    try:
        proc.start(timeout)
        yield proc
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rescore_sidecar.tools.jaeger",
                                     description="Build (once, cached) the Jaeger all-in-one the tracing tests use.")
    parser.add_argument("command", choices=["build", "path"],
                        help="build: build if missing, print the path; path: print the cached path or exit 1")
    args = parser.parse_args(argv)
    if args.command == "path":
        found = cached_binary()
        if found is None:
            print(f"jaeger {VERSION} is not built (expected {cache_dir() / 'jaeger'})", file=sys.stderr)
            return 1
        print(found)
        return 0
    try:
        print(ensure_jaeger())
    except JaegerUnavailable as exc:
        print(f"jaeger: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
