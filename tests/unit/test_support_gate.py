"""tests/support/gate.py, the forwarder the demo's Ctrl-C test relies on: a held request is dropped
at the cut, and a request in flight on another connection through the cut still gets its answer
(the demo's clean-up once hung 60 s on a connection the cut had closed under it)."""
import http.server
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.support.gate import GatedForwarder


class SlowHandler(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        SlowHandler.seen.append(self.path)
        time.sleep(0.5 if self.path == "/slow" else 0)
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    SlowHandler.seen = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_the_cut_drops_the_held_request_and_spares_one_in_flight(server):
    with GatedForwarder(server, hold_if=lambda chunk: b"/_search" in chunk) as gate:
        held_error: list[BaseException] = []

        def search():
            try:
                urllib.request.urlopen(f"{gate.url}/_search", timeout=10).read()
            except (urllib.error.URLError, ConnectionError) as exc:
                held_error.append(exc)

        searcher = threading.Thread(target=search)
        searcher.start()
        assert gate.held.wait(5)
        answer: list[bytes] = []
        slow = threading.Thread(target=lambda: answer.append(urllib.request.urlopen(f"{gate.url}/slow",
                                                                                     timeout=10).read()))
        slow.start()
        time.sleep(0.2)  # /slow is at the server now, its answer not yet back
        started = time.monotonic()
        gate.cut()
        slow.join(10)
        searcher.join(10)
        assert answer == [b"/slow"]
        assert held_error and time.monotonic() - started < 5  # closed at once, not left to time out
        assert "/_search" not in SlowHandler.seen
        # after the cut other requests still pass
        assert urllib.request.urlopen(f"{gate.url}/after", timeout=10).read() == b"/after"
