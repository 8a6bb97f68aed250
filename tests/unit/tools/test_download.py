"""Downloads through tools/download.py from a local HTTP server: the file arrives whole, progress
reports bytes and rate, transient failures (503, a body cut short) are retried, a 404 is not."""
from __future__ import annotations

import http.server
import os
import re
import threading

import pytest

from rescore_sidecar.tools.download import DownloadError, download, human_bytes, progress_line

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: list[str]):
        self.script = script  # what each request gets, in turn; the last repeats: ok | 503 | 404 | cut
        self.requests = 0
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        outcome = server.script[min(server.requests, len(server.script) - 1)]
        server.requests += 1
        if outcome in ("503", "404"):
            self.send_error(int(outcome))
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        body = PAYLOAD if outcome == "ok" else PAYLOAD[: len(PAYLOAD) // 2]  # "cut": the connection drops
        for start in range(0, len(body), 64 * 1024):
            self.wfile.write(body[start:start + 64 * 1024])

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(*script: str) -> tuple[Server, str]:
        server = Server(list(script))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}/opensearch.zip"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_file_arrives_whole_with_progress_in_bytes_and_rate(serve, tmp_path):
    _, url = serve("ok")
    lines = []
    size = download(url, tmp_path / "e.zip", what="opensearch test", report=lines.append, every=0)
    assert size == len(PAYLOAD) and (tmp_path / "e.zip").read_bytes() == PAYLOAD
    assert len(lines) > 2  # progress while it ran, then the final line
    assert re.fullmatch(r"downloading opensearch test: [\d.]+ [kM]?B / 3\.1 MB \(\d+%\), [\d.]+ [kMG]?B/s", lines[0])
    assert re.fullmatch(r"downloaded opensearch test: 3\.1 MB in [\d.]+ s \([\d.]+ [kMG]?B/s\)", lines[-1])
    assert list(tmp_path.iterdir()) == [tmp_path / "e.zip"]  # no .part left


def test_transient_failures_are_retried(serve, tmp_path):
    server, url = serve("503", "cut", "ok")
    lines = []
    download(url, tmp_path / "e.zip", what="x", report=lines.append, first_wait=0.01, longest_wait=0.02)
    assert (tmp_path / "e.zip").read_bytes() == PAYLOAD and server.requests == 3
    assert sum(line.startswith("retrying x") for line in lines) == 2


def test_a_missing_file_fails_at_once_and_leaves_nothing(serve, tmp_path):
    server, url = serve("404")
    with pytest.raises(DownloadError, match=r"download of x failed: http://127\.0\.0\.1:\d+/opensearch\.zip: .*404"):
        download(url, tmp_path / "e.zip", what="x", first_wait=0.01)
    assert server.requests == 1 and list(tmp_path.iterdir()) == []


def test_transient_failures_give_up_after_the_attempts(serve, tmp_path):
    server, url = serve("503")
    with pytest.raises(DownloadError, match="503"):
        download(url, tmp_path / "e.zip", what="x", attempts=3, first_wait=0.01, longest_wait=0.02)
    assert server.requests == 3 and list(tmp_path.iterdir()) == []


def test_human_sizes():
    assert [human_bytes(n) for n in (512, 1500, 2_500_000, 3.2e9)] == ["512 B", "1.5 kB", "2.5 MB", "3.2 GB"]
    assert progress_line("e", 500, None, 0) == "downloading e: 500 B, –/s"
