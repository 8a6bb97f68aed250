"""A real proxy (`python -m rescore_sidecar.tools proxy ...`) as a subprocess on a free loopback port.

    with proxy_process(engine.url, "--sidecar", sidecar.address) as proxy:
        httpx.post(proxy.url + "/idx/_search", json=...)

Start waits for `/_rescore/health`; the log is kept in `log_path` (read it with `log_text()`).
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Iterator, Mapping, Sequence

import httpx

from rescore_sidecar.tools.sidecar_process import free_port
from rescore_sidecar.tools.waiting import WaitTimeout, wait_until


class ProxyProcess:
    def __init__(self, upstream: str, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None,
                 port: int | None = None):
        self.upstream = upstream
        self.args = list(args)
        self.env = dict(env or {})
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        handle = tempfile.NamedTemporaryFile(prefix="proxy-", suffix=".log", delete=False)
        handle.close()
        self.log_path = pathlib.Path(handle.name)
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "rescore_sidecar.tools", "proxy", "--upstream", self.upstream,
                "--listen", f"127.0.0.1:{self.port}", *self.args]

    def start(self, timeout: float = 60.0) -> "ProxyProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        def exited() -> None:
            if self.process.poll() is not None:
                raise RuntimeError(f"proxy exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")

        def healthy() -> bool:
            try:
                return httpx.get(self.url + "/_rescore/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False  # not listening yet

        try:
            wait_until(healthy, timeout=timeout, what="proxy health", check=exited, first=0.05, longest=0.5)
        except WaitTimeout:
            self.stop()
            raise RuntimeError(f"proxy not healthy after {timeout:.0f}s:\n{self.log_text()[-3000:]}") from None
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self.log_path.unlink()


@contextlib.contextmanager
def proxy_process(upstream: str, *args: str, **kwargs) -> Iterator[ProxyProcess]:
    proc = ProxyProcess(upstream, args, **kwargs).start()
    try:
        yield proc
    finally:
        proc.close()
