"""An event-log sink that indexes the events into an OpenSearch / Elasticsearch index with `_bulk`.

The user already runs the engine, so the A/B events can live beside the documents: one `_bulk`
request per batch the log's writer thread hands over (`FeedbackLog` never waits for it: a search
only enqueues). Plain HTTP(S) through the standard library, so the base install needs nothing more;
credentials as `https://user:password@host:9200/index`. A batch the engine refuses (HTTP error, or
`"errors": true` in the bulk answer) raises, and the log counts it in `write_errors`.
"""
from __future__ import annotations

import base64
import json
import ssl
import urllib.request
from typing import Sequence
from urllib.parse import unquote, urlsplit, urlunsplit


class IndexSink:
    """JSON-lines events as documents of `index` on the engine at `url` (`http(s)://[user:pw@]host:port`)."""

    def __init__(self, url: str, index: str, *, timeout: float = 10.0, ca_file: str | None = None) -> None:
        if not index or index.startswith(("_", "-", "+")) or "/" in index:
            raise ValueError(f"not a usable index name: {index!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"index sink URL must be http(s)://host:port, got {url!r}")
        self.headers = {"Content-Type": "application/x-ndjson"}
        if parts.username is not None:
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.bulk_url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/_bulk", "", ""))
        self.index, self.timeout = index, timeout
        self._context = ssl.create_default_context(cafile=ca_file) if parts.scheme == "https" else None

    @classmethod
    def from_target(cls, target: str) -> "IndexSink":
        """`http(s)://[user:pw@]host:port/INDEX`: the last path segment is the index."""
        base, _, index = target.rstrip("/").rpartition("/")
        return cls(base, index)

    def write(self, lines: Sequence[str]) -> None:
        action = json.dumps({"index": {"_index": self.index}})
        body = "".join(f"{action}\n{line}\n" for line in lines).encode()
        request = urllib.request.Request(self.bulk_url, data=body, headers=self.headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as answer:
            result = json.loads(answer.read())
        if result.get("errors"):
            first = next((i for i in result.get("items", []) if next(iter(i.values()), {}).get("error")), {})
            raise RuntimeError(f"bulk indexing of A/B events into {self.index!r} failed: {first}")

    def close(self) -> None:
        pass
