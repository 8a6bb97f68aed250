"""The engine-index sink of the event log: targets, and a batch sent as one _bulk request."""
from __future__ import annotations

import http.server
import json
import threading

import pytest

from rescore_sidecar.connectors.feedback_log import JsonLinesFile, StreamSink, open_sink
from rescore_sidecar.connectors.index_sink import IndexSink


def test_open_sink_targets(tmp_path):
    assert isinstance(open_sink("-"), StreamSink)
    assert isinstance(open_sink(str(tmp_path / "e.jsonl")), JsonLinesFile)
    sink = open_sink("https://user:p%40ss@es:9200/ab-events")
    assert isinstance(sink, IndexSink) and sink.index == "ab-events" and sink.bulk_url == "https://es:9200/_bulk"
    assert sink.headers["Authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss


@pytest.mark.parametrize("url, index", [("ftp://h/x", "i"), ("http://h:9200", "_bad"), ("http://h:9200", "")])
def test_bad_targets_are_clear_errors(url, index):
    with pytest.raises(ValueError):
        IndexSink(url, index)


class _Bulk(http.server.BaseHTTPRequestHandler):
    seen: list = []
    answer = {"errors": False, "items": []}

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.path, self.headers["Content-Type"], body.decode()))
        data = json.dumps(type(self).answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_a_batch_is_one_bulk_request_and_refused_items_raise():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Bulk)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sink = IndexSink(f"http://127.0.0.1:{server.server_port}", "ev")
        sink.write(['{"type":"impression"}', '{"type":"feedback"}'])
        path, content_type, body = _Bulk.seen[-1]
        assert path == "/_bulk" and content_type == "application/x-ndjson"
        assert body.splitlines() == ['{"index": {"_index": "ev"}}', '{"type":"impression"}',
                                     '{"index": {"_index": "ev"}}', '{"type":"feedback"}']
        _Bulk.answer = {"errors": True, "items": [{"index": {"error": {"type": "mapper_parsing_exception"}}}]}
        with pytest.raises(RuntimeError, match="mapper_parsing_exception"):
            sink.write(['{"type":"impression"}'])
    finally:
        server.shutdown()
