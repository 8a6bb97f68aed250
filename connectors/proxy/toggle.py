"""Whether and how to rescore one search: configured default, A/B arm, then the client's toggles.

A toggle is `on`/`off` (also true/false, 1/0, yes/no) or a JSON object of rescoring options
(`{"window": 50}`; `"enabled": false` inside it turns rescoring off). It can come from the
`X-Rescore` header, the `rescore` query-string parameter or a `rescore_sidecar` body section;
the most specific wins: body > query string > header > arm > default.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from typing import Any, Mapping

from connectors.proxy.config import Arm, ProxyConfig

TOGGLE_HEADER = "X-Rescore"
ARM_KEY_HEADER = "X-Rescore-Key"
BODY_SECTION = "rescore_sidecar"

_ON = {"on", "true", "1", "yes"}
_OFF = {"off", "false", "0", "no"}


class ToggleError(ValueError):
    """A toggle the proxy cannot read; answered with 400 before anything reaches the engine."""


@dataclasses.dataclass(frozen=True)
class Decision:
    enabled: bool
    arm: str = ""
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Where the final say came from: default, arm, header, query, body.
    source: str = "default"


def parse_toggle(value: Any, where: str) -> tuple[bool | None, dict[str, Any]]:
    """(enabled or None for "unchanged", options) from one toggle value."""
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


def choose_arm(arms: tuple[Arm, ...], key: str | None) -> Arm | None:
    """Weighted arm choice: stable for a key (same key, same arm), random without one."""
    if not arms:
        return None
    total = sum(a.weight for a in arms)
    if key:
        digest = hashlib.sha256(key.encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * total
    else:
        point = random.random() * total
    for arm in arms:
        if point < arm.weight:
            return arm
        point -= arm.weight
    return [a for a in arms if a.weight > 0][-1]


def decide(config: ProxyConfig, *, header: str | None, key: str | None, query: str | None,
           body_section: Any = None) -> Decision:
    enabled, options, source, arm_name = config.default_enabled, dict(config.rescore), "default", ""
    arm = choose_arm(config.arms, key)
    if arm is not None:
        enabled, arm_name, source = arm.enabled, arm.name, "arm"
        options.update(arm.options)
    for value, where in ((header, "header"), (query, "query"), (body_section, "body")):
        if value is None:
            continue
        flag, extra = parse_toggle(value, {"header": f"{TOGGLE_HEADER} header",
                                           "query": "rescore query parameter",
                                           "body": f"{BODY_SECTION} body section"}[where])
        if flag is not None:
            enabled = flag
        options.update(extra)
        source = where
    return Decision(enabled=enabled, arm=arm_name, options=options, source=source)
