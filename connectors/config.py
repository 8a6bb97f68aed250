"""Connector settings: small frozen dataclasses with defaults.

`RerankOptions` says how one search is reranked (per request, per A/B arm or as the default);
`SidecarClientConfig` where the sidecar is and how long a search may wait for it; `ConnectorConfig`
ties them together.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from rescore_sidecar.connectors._core.window import WindowPolicy

POLICIES = ("replace", "linear", "rrf")


@dataclasses.dataclass(frozen=True)
class RerankOptions:
    """How a search is reranked. Every field can be overridden per request (`rerank={...}`)."""

    enabled: bool = True
    # Name of a model served by the sidecar; "" = the sidecar's default model.
    model: str = ""
    # The top `window` hits go to the sidecar; later hits keep engine order after them.
    window: int = 50
    # Dotted paths into `_source`; list values are joined, several fields joined with `separator`.
    fields: tuple[str, ...] = ("text",)
    separator: str = "\n"
    # Characters of text per hit sent over the wire (the sidecar truncates tokens anyway).
    max_chars: int = 2000
    # replace: `_score` = model score; linear: blend of min-max normalised engine and model
    # scores (`model_weight` on the model); rrf: reciprocal-rank fusion with constant `rrf_k`.
    policy: str = "replace"
    model_weight: float = 0.7
    rrf_k: int = 60
    # Query text for the model; None = taken from the first match-like clause of the query.
    query: str | None = None
    # Add `_rescore` (engine score, engine rank, model score) to each hit even without `explain`.
    explain: bool = False
    # Brownout (connectors/_core/window.py): while the sidecar slows down, send fewer hits, stepping
    # through `window_steps` (largest first) down to `window_floor` (0 = may turn reranking off for the
    # target); `adaptive=False` pins `window` whatever the load.
    adaptive: bool = True
    window_steps: tuple[int, ...] = (30, 20, 10)
    window_floor: int = 0
    # Selective reranking (connectors/_core/selective.py): skip the sidecar when the engine's top-hit
    # score gap, as a share of the window's score range, reaches this; None = always rerank.
    selective_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"rerank policy must be one of {POLICIES}, got {self.policy!r}")
        if not isinstance(self.window, int) or isinstance(self.window, bool) or not 1 <= self.window <= 10_000:
            raise ValueError(f"rerank window must be an integer in 1..10000, got {self.window!r}")
        if isinstance(self.fields, str) or not self.fields or not all(isinstance(f, str) and f for f in self.fields):
            raise ValueError(f"rerank fields must be a non-empty list of field paths, got {self.fields!r}")
        if not 0.0 <= self.model_weight <= 1.0:
            raise ValueError(f"model_weight must be in [0, 1], got {self.model_weight!r}")
        if self.max_chars < 1 or self.rrf_k < 1:
            raise ValueError("max_chars and rrf_k must be positive")
        if not isinstance(self.adaptive, bool):
            raise ValueError(f"rerank adaptive must be true or false, got {self.adaptive!r}")
        if isinstance(self.window_steps, (list, tuple)):
            object.__setattr__(self, "window_steps", tuple(self.window_steps))
        self.window_policy()  # bad steps / floor: a clear error when the options are built (at start)
        t = self.selective_threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0):
            raise ValueError(f"selective_threshold must be a number in [0, 1] or null, got {t!r}")

    def window_policy(self) -> WindowPolicy:
        """The brownout policy of these options (ValueError when steps or floor are bad)."""
        if not isinstance(self.window_steps, tuple):
            raise ValueError(f"window_steps must be a list of integers, got {self.window_steps!r}")
        return WindowPolicy(steps=self.window_steps, floor=self.window_floor)

    def replace(self, overrides: Mapping[str, Any]) -> "RerankOptions":
        """A copy with `overrides` applied; unknown keys are an error, lists become tuples."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown rerank option(s) {sorted(unknown)}; known: {sorted(known)}")
        values = dict(overrides)
        if "fields" in values and isinstance(values["fields"], (list, tuple)):
            values["fields"] = tuple(values["fields"])
        elif "fields" in values and isinstance(values["fields"], str):
            values["fields"] = (values["fields"],)
        return dataclasses.replace(self, **values)


@dataclasses.dataclass(frozen=True)
class Arm:
    """One A/B arm. `options=None` is a control arm: engine order, no sidecar call."""

    name: str
    weight: float
    options: RerankOptions | None = None


EXPERIMENT_MODES = ("interleave", "split")


@dataclasses.dataclass(frozen=True)
class Experiment:
    """An A/B experiment of two arms (`Arm`; options None = the engine's order) run on every search
    that carries no `rerank=` toggle (connectors/_core/experiment.py, docs/ab-testing.md).

    `mode="interleave"`: both arms rank the same engine hits and the user sees their team-draft
    merge; `"split"`: the user sees one arm, chosen by a hash of `ab_key` (else at random), weights
    as in `ConnectorConfig.arms`. Impressions and feedback go to the event log `events`: "-" for
    stdout, else a JSON-lines file appended to."""

    name: str
    arms: tuple[Arm, Arm]
    mode: str = "interleave"
    events: str = "-"

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", tuple(self.arms))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("experiment name must be a non-empty string")
        if self.mode not in EXPERIMENT_MODES:
            raise ValueError(f"experiment mode must be one of {EXPERIMENT_MODES}, got {self.mode!r}")
        if len(self.arms) != 2 or not all(isinstance(a, Arm) for a in self.arms):
            raise ValueError("an experiment has exactly two arms")
        if self.arms[0].name == self.arms[1].name or not all(a.name for a in self.arms):
            raise ValueError(f"experiment arm names must be distinct and non-empty: {[a.name for a in self.arms]}")
        if self.mode == "interleave" and all(a.options is None for a in self.arms):
            raise ValueError("an interleaved experiment needs at least one arm with rerank options "
                             "(two engine-order arms show the same list)")
        if self.mode == "split" and (any(a.weight < 0 for a in self.arms) or sum(a.weight for a in self.arms) <= 0):
            raise ValueError("experiment arm weights must be >= 0 and sum to more than 0")
        if not isinstance(self.events, str) or not self.events:
            raise ValueError("experiment events must be \"-\" (stdout) or a file path")


@dataclasses.dataclass(frozen=True)
class BreakerConfig:
    """Circuit breaker per sidecar target, over a sliding window of the last calls."""

    window_size: int = 20
    minimum_calls: int = 10
    failure_rate: float = 0.5
    slow_call_rate: float = 0.8
    slow_call_seconds: float = 0.2
    open_seconds: float = 10.0
    half_open_calls: int = 3


@dataclasses.dataclass(frozen=True)
class OutlierConfig:
    """Health per sidecar endpoint (each address a target resolves to), in the style of Envoy's
    outlier detection: an endpoint with `consecutive_failures` failures in a row, or a failure
    rate of `failure_rate` over its last `window_size` calls (at least `minimum_calls`), is ejected
    for `base_ejection_seconds` x the number of times it was ejected (at most
    `max_ejection_seconds`), then gets calls again on probation (one failure ejects it again).
    At most `max_ejected_percent` of the endpoints are ejected at once (always at least one)."""

    consecutive_failures: int = 3
    failure_rate: float = 0.5
    window_size: int = 20
    minimum_calls: int = 10
    base_ejection_seconds: float = 2.0
    max_ejection_seconds: float = 30.0
    max_ejected_percent: float = 50.0
    # How often a target's DNS name is resolved again (pods come and go).
    resolve_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1 or self.window_size < 1 or self.minimum_calls < 1:
            raise ValueError("consecutive_failures, window_size and minimum_calls must be >= 1")
        if not 0.0 < self.failure_rate <= 1.0 or not 0.0 <= self.max_ejected_percent <= 100.0:
            raise ValueError("failure_rate must be in (0, 1] and max_ejected_percent in [0, 100]")
        if self.base_ejection_seconds <= 0 or self.max_ejection_seconds < self.base_ejection_seconds:
            raise ValueError("base_ejection_seconds must be > 0 and <= max_ejection_seconds")
        if self.resolve_seconds <= 0:
            raise ValueError("resolve_seconds must be > 0")


@dataclasses.dataclass(frozen=True)
class SidecarClientConfig:
    # One or more sidecar targets, each `host:port` (every address the name resolves to),
    # `dns:///host:port`, `dns://DNS-SERVER:PORT/host:port` or `ipv4:a:p,b:p` / `ipv6:[a]:p,...`;
    # calls are spread round-robin over the targets whose breaker is closed, and within a target
    # over its healthy endpoints (connectors/_sidecar/pool.py).
    targets: tuple[str, ...] = ("127.0.0.1:50051",)
    # Wall-clock budget of the whole sidecar step of a search (retry included).
    budget_ms: float = 250.0
    # At most one retry, on UNAVAILABLE only, when at least this much budget is left.
    retry: bool = True
    min_retry_budget_ms: float = 20.0
    breaker: BreakerConfig = BreakerConfig()
    # Health per endpoint; the breaker above counts a failure only when no other endpoint is healthy.
    outlier: OutlierConfig = OutlierConfig()
    # Transport security, matching the sidecar's --tls-* and --auth-token settings. TLS is on when
    # `tls` is set or any certificate file is given; `ca_file` None = the system's trusted roots.
    tls: bool = False
    ca_file: str | None = None
    # Mutual TLS: the client certificate chain and its key (PEM), presented to the sidecar.
    client_cert_file: str | None = None
    client_key_file: str | None = None
    # Name the sidecar's certificate must carry, when it differs from the target's host.
    tls_server_name: str | None = None
    # Shared bearer token sent as `authorization: Bearer <token>`; the file (read once, when the
    # client is built) wins over the value. Never part of repr().
    auth_token: str = dataclasses.field(default="", repr=False)
    auth_token_file: str | None = None
    # Every call asks the sidecar to skip its score cache (compute every pair, store nothing): for
    # measuring compute latency (`rescore-sidecar eval`), never for serving users. Per call:
    # `rerank(..., bypass_cache=True)`.
    bypass_cache: bool = False

    def __post_init__(self) -> None:
        if bool(self.client_cert_file) != bool(self.client_key_file):
            raise ValueError("sidecar client_cert_file and client_key_file must be given together (mutual TLS)")

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls or self.ca_file or self.client_cert_file)


@dataclasses.dataclass(frozen=True)
class ConnectorConfig:
    default: RerankOptions = RerankOptions()
    # A/B arms chosen by a hash of the request's `ab_key`; empty = everyone gets `default`.
    arms: tuple[Arm, ...] = ()
    # Salt of the arm hash: change it to reshuffle users between arms.
    ab_salt: str = "rescore"
    sidecar: SidecarClientConfig = SidecarClientConfig()
    # An interleaved or split experiment run on searches without a `rerank=` toggle; None = none.
    experiment: Experiment | None = None

    def __post_init__(self) -> None:
        if self.arms:
            names = [a.name for a in self.arms]
            if len(set(names)) != len(names):
                raise ValueError(f"A/B arm names must be unique: {names}")
            if any(a.weight < 0 for a in self.arms) or sum(a.weight for a in self.arms) <= 0:
                raise ValueError("A/B arm weights must be >= 0 and sum to more than 0")
