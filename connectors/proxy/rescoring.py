"""The proxy's view of the connector core: plan a search, then rescore its answer.

`Rescorer` is the whole surface the HTTP side needs; `create_rescorer` builds it on the
connector core (connectors/) so windowing, text extraction, `_source` transparency,
pagination, deadline, breaker and fallback have one implementation for every connector.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol

from connectors.proxy.config import ProxyConfig


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A search response ready for the client and what happened to it."""

    body: Any
    # reranked | fallback | off
    outcome: str
    # Why it fell back (sidecar_unavailable, deadline, breaker_open, ...); "" otherwise.
    reason: str = ""


class Plan(Protocol):
    # The body to send to the engine (window-sized, `_source` widened as needed).
    engine_body: dict[str, Any] | None
    # Query-string parameters the plan moved into the body (e.g. from, size).
    drop_params: frozenset[str]


class Rescorer(Protocol):
    def plan(self, body: dict[str, Any] | None, params: Mapping[str, str],
             decision: Any) -> Plan: ...

    async def finish(self, response: dict[str, Any], plan: Plan) -> Outcome: ...

    async def close(self) -> None: ...


def create_rescorer(config: ProxyConfig) -> Rescorer:
    raise NotImplementedError("connector core not available yet")
