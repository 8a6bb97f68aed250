"""Process logging for the sidecar and the proxy: plain text (the default) or one JSON object per line
(`log_format: json`) carrying the current span's `trace_id` / `span_id` (connectors.tracing), so a
log line and its trace join. Light (standard library only): both servers import it.

One line per request goes to the logger `rescore.request` with the outcome and timings as fields:
at INFO with JSON logs, at DEBUG with text logs (no change to a text log's volume by default).
"""
from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, Mapping

from rescore_sidecar.connectors import tracing

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REQUEST_LOGGER = "rescore.request"
_request_level = logging.DEBUG
request_log = logging.getLogger(REQUEST_LOGGER)


class JsonFormatter(logging.Formatter):
    """{time, level, logger, message, trace_id?, span_id?, ...fields, exception?} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        ids = getattr(record, "trace_ids", None) or tracing.ids()
        if ids:
            out["trace_id"], out["span_id"] = ids
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            out.update({k: v for k, v in fields.items() if k not in out})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: str, fmt: str = "text") -> None:
    """The root logger's level and format (stderr); `fmt` one of FORMATS (ValueError otherwise)."""
    global _request_level
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    _request_level = logging.INFO if fmt == "json" else logging.DEBUG


def request_line(message: str, fields: Mapping[str, Any]) -> None:
    """The one line per request (see the module doc); `fields` become JSON keys. Call it inside the
    request's span so the line carries its ids."""
    if request_log.isEnabledFor(_request_level):
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        request_log.log(_request_level, "%s %s", message, text, extra={"fields": dict(fields)})
