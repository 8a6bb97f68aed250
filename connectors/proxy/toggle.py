"""The client's rescoring toggles, read from HTTP and handed to the connector core as `rerank=`.

A toggle is `on`/`off` (also true/false, 1/0, yes/no) or a JSON object of rescoring options
(`{"window": 50}`; `"enabled": false` inside it turns rescoring off). It can come from the
`X-Rescore` header, the `rescore` query-string parameter or a `rescore_sidecar` body section;
all present are merged, the most specific winning: body > query string > header. The core then
applies it on top of the A/B arm (`X-Rescore-Key`) or the configured default.
"""
from __future__ import annotations

import json
from typing import Any

TOGGLE_HEADER = "X-Rescore"
ARM_KEY_HEADER = "X-Rescore-Key"
BODY_SECTION = "rescore_sidecar"

_ON = {"on", "true", "1", "yes"}
_OFF = {"off", "false", "0", "no"}


class ToggleError(ValueError):
    """A toggle the proxy cannot read; answered with 400 before anything reaches the engine."""


def parse_toggle(value: Any, where: str) -> tuple[bool | None, dict[str, Any]]:
    """(enabled, or None for "as configured", option overrides) from one toggle value."""
    if isinstance(value, bool):
        return value, {}
    if isinstance(value, dict):
        options = dict(value)
        enabled = options.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise ToggleError(f"{where}: \"enabled\" must be true or false")
        return enabled, options
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _ON:
            return True, {}
        if text.lower() in _OFF:
            return False, {}
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ToggleError(f"{where}: not valid JSON: {exc.msg}") from None
            return parse_toggle(parsed, where)
    raise ToggleError(f"{where}: expected on, off or a JSON object of options, got {value!r}")


def merge_toggles(header: str | None, query: str | None, body: Any = None) -> Any:
    """The core's `rerank=` value: None (arm or default), a bool, or a dict of overrides."""
    enabled: bool | None = None
    options: dict[str, Any] = {}
    for value, where in ((header, f"{TOGGLE_HEADER} header"), (query, "rescore query parameter"),
                         (body, f"{BODY_SECTION} body section")):
        if value is None:
            continue
        flag, extra = parse_toggle(value, where)
        enabled = flag if flag is not None else enabled
        options.update(extra)
    if not options:
        return enabled
    return {**options, "enabled": True if enabled is None else enabled}
