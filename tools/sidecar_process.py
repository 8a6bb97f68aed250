"""A real sidecar (`python -m rescore_sidecar.tools serve ...`) as a subprocess on free loopback ports.

    with sidecar_process({"tiny": model_dir}) as sidecar:
        channel = grpc.insecure_channel(sidecar.address)
        sidecar.pause(); ...; sidecar.resume()   # SIGSTOP / SIGCONT, for fallback tests

Start waits until `grpc.health.v1` reports SERVING; a timeout or an early exit raises with
the process's log tail.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Iterator, Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rescore_sidecar.tools.waiting import WaitTimeout, wait_until


class SidecarStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SidecarProcess:
    """A sidecar subprocess. `address` is `HOST:PORT` for gRPC (`host` 127.0.0.1 unless given:
    replicas on 127.0.0.2, 127.0.0.3, ... can share one port, like pods behind a headless Service)."""

    def __init__(self, models: Mapping[str, str | os.PathLike], *, extra_args: Sequence[str] = (),
                 port: int | None = None, metrics_port: int | None = None, env: Mapping[str, str] | None = None,
                 credentials: grpc.ChannelCredentials | None = None, http_port: int | None = None,
                 host: str = "127.0.0.1"):
        if not models:
            raise ValueError("at least one model NAME -> PATH is needed")
        self.models = {name: str(path) for name, path in models.items()}
        self.extra_args = list(extra_args)
        self.host = host
        self.port = port or free_port()
        self.metrics_port = metrics_port if metrics_port is not None else free_port()
        self.env = dict(env or {})
        self.http_port = http_port  # HTTP rerank API (--http-port); None = off; 0 = a free port
        if self.http_port == 0:
            self.http_port = free_port()
        # For a sidecar started with --tls-*: how the health probe connects (health needs no token).
        self.credentials = credentials
        self.process: subprocess.Popen | None = None
        self._log_file = tempfile.NamedTemporaryFile(prefix="sidecar-", suffix=".log", delete=False)
        self.log_path = pathlib.Path(self._log_file.name)
        self._log_file.close()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        if not self.http_port:
            raise RuntimeError("started without http_port")
        return f"{'https' if self.credentials else 'http'}://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "rescore_sidecar.tools", "serve"]
        for name, path in self.models.items():
            cmd += ["--model", f"{name}={path}"]
        cmd += ["--host", self.host, "--port", str(self.port), "--metrics-host", self.host,
                "--metrics-port", str(self.metrics_port), "--device", "cpu", "--drain-seconds", "0"]
        if self.http_port:
            cmd += ["--http-port", str(self.http_port)]
        return cmd + self.extra_args

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 120.0) -> "SidecarProcess":
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("sidecar already running")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env)
        try:
            self.wait_serving(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def serving(self, timeout: float = 1.0) -> bool:
        channel = (grpc.secure_channel(self.address, self.credentials) if self.credentials
                   else grpc.insecure_channel(self.address))
        with channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                                  timeout=timeout)
            except grpc.RpcError:
                return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def wait_serving(self, timeout: float = 120.0) -> None:
        def exited() -> None:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise SidecarStartError(f"sidecar exited with status {code} before SERVING: {' '.join(self.command())}"
                                        f"\nlog tail:\n{self.log_tail()}")

        try:
            wait_until(self.serving, timeout=timeout, what="sidecar health", check=exited, first=0.1, longest=0.5)
        except WaitTimeout:
            raise SidecarStartError(f"sidecar not SERVING after {timeout:.0f}s: {' '.join(self.command())}"
                                    f"\nlog tail:\n{self.log_tail()}") from None

    def stop(self, grace_seconds: float = 15.0) -> None:
        """SIGTERM (resuming it first if paused), wait, then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung sidecar)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self, timeout: float = 120.0) -> "SidecarProcess":
        """Stops and starts again on the same ports."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self.log_path.unlink()


@contextlib.contextmanager
def sidecar_process(models: Mapping[str, str | os.PathLike], *, extra_args: Sequence[str] = (),
                    timeout: float = 120.0, **kwargs) -> Iterator[SidecarProcess]:
    proc = SidecarProcess(models, extra_args=extra_args, **kwargs)
    proc.start(timeout)
    try:
        yield proc
    finally:
        proc.close()
