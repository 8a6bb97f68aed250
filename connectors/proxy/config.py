"""Proxy settings: one frozen pydantic model, filled from defaults < YAML file < environment < flags.

Every setting is the flag `--foo-bar`, the environment variable `RESCORE_PROXY_FOO_BAR` and the
YAML key `foo_bar` (file from `--config` / `RESCORE_PROXY_CONFIG`); `upstreams` and `sidecars` are
spelt singular as flags and variables (`--upstream a,b`, `RESCORE_PROXY_SIDECAR`), and YAML takes
either spelling. Structured settings (`rescore`, `breaker`, `arms`) come from YAML or as JSON
text. The machinery (file, environment, flags, docs check) is shared with the sidecar's config:
`rescore_sidecar.sidecar.settings`.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from rescore_sidecar.connectors.config import (Arm, BreakerConfig, ConnectorConfig, Experiment, RerankOptions,
                                              SidecarClientConfig)
from rescore_sidecar.sidecar import settings

ENV_PREFIX = "RESCORE_PROXY_"
# Flag (and variable) spelling of the fields whose flag reads better singular (`--upstream a,b`).
FLAG_NAMES = {"upstreams": "upstream", "sidecars": "sidecar"}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


class ProxyConfig(BaseModel):
    """Everything `rescore-sidecar proxy` can be told."""

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    upstreams: tuple[str, ...] = Field(
        (), description="engine URL(s), comma separated: round-robin, failover on connection errors")
    listen: str = Field("0.0.0.0:9201", description="HOST:PORT to listen on")
    sidecars: tuple[str, ...] = Field(
        (), description="sidecar gRPC target(s), comma separated: HOST:PORT (every address the name resolves to), "
                       "dns:///HOST:PORT, dns://DNS-IP:PORT/HOST:PORT, ipv4:A:P,B:P; none = never rescore")
    default_enabled: bool = Field(True, description="rescore searches that carry no toggle (true/false)")
    # Default rescoring options of the connector core (`RerankOptions` fields: window, fields, model, ...).
    rescore: dict[str, Any] = Field(
        default_factory=dict, description="JSON object of default rescoring options (window, fields, model, policy, ...)")
    # A/B arms ({name, weight, options}), chosen by the X-Rescore-Key header. An arm's options
    # override the `rescore` defaults; options None = control arm (engine order).
    arms: tuple[dict[str, Any], ...] = Field(
        (), description="JSON list of A/B arms [{name, weight, options}], options null = control arm")
    ab_salt: str = Field("rescore", description="salt of the A/B hash of X-Rescore-Key (change to reshuffle users)")
    # An interleaved or split experiment ({name, mode, arms: [{name, weight, options}] x 2}) run on
    # searches without a toggle; its impressions and POST /_rescore/feedback go to `experiment_events`.
    experiment: dict[str, Any] | None = Field(
        None, description="JSON object {name, mode: interleave|split, arms: [two {name, weight, options}]}, "
                          "options null = engine order; run on searches that carry no toggle")
    experiment_events: str = Field("-", description="event log of the experiment's impressions and feedback: "
                                                    "- (stdout) or a JSON-lines file to append to")
    budget_ms: float = Field(250.0, gt=0, description="milliseconds a search may spend on the sidecar before falling back")
    breaker: dict[str, Any] = Field(
        default_factory=dict, description="JSON object of sidecar circuit-breaker settings (window_size, failure_rate, ...)")
    # Transport security towards the sidecar(s): TLS (CA bundle, or the system roots with
    # sidecar_tls), mutual TLS (client certificate + key) and the shared bearer token.
    sidecar_tls: bool = Field(False, description="TLS to the sidecar with the system's trusted roots (true/false; implied by --sidecar-ca)")
    sidecar_ca: str | None = Field(None, description="CA bundle (PEM) to verify the sidecar's certificate (turns on TLS)")
    sidecar_client_cert: str | None = Field(None, description="client certificate chain (PEM) presented to the sidecar (mutual TLS)")
    sidecar_client_key: str | None = Field(None, description="key (PEM) of --sidecar-client-cert")
    sidecar_server_name: str | None = Field(None, description="name expected in the sidecar's certificate, if not the host of --sidecar")
    sidecar_token: str = Field("", repr=False, description="shared bearer token for the sidecar (prefer --sidecar-token-file or the environment)")
    sidecar_token_file: str | None = Field(None, description="file holding the sidecar's shared bearer token")
    # TLS towards the upstream cluster.
    upstream_ca: str | None = Field(None, description="CA bundle (PEM) to verify the upstream's certificate")
    upstream_insecure: bool = Field(False, description="do not verify the upstream's TLS certificate (true/false)")
    upstream_client_cert: str | None = Field(None, description="client certificate (PEM) presented to the upstream")
    upstream_client_key: str | None = Field(None, description="key of the client certificate (PEM), if not inside the cert file")
    # Limits and timeouts (seconds). The request limit matches Elasticsearch's own default.
    max_request_bytes: int = Field(100 * 1024 * 1024, gt=0, description="reject request bodies larger than this with 413")
    # Search bodies nested deeper than this get a 400 from the proxy: OpenSearch 2.19 dies with a
    # StackOverflowError on a bool query nested ~350 deep (~1000 JSON levels). 0 = no check.
    max_json_depth: int = Field(200, ge=0, description="reject search bodies nested deeper than this with 400 (0 = off)")
    connect_timeout: float = Field(10.0, gt=0, description="seconds to open a connection to the upstream")
    upstream_timeout: float = Field(300.0, gt=0, description="seconds for the upstream's whole answer")
    max_connections: int = Field(512, ge=0, description="upstream connection pool size (0 = unlimited)")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")
    log_format: str = Field("text", description="text, or json: one object per line with trace_id/span_id and a line "
                                                "per request (docs/tracing.md)")
    # OpenTelemetry (the `otel` extra): configured by the OTEL_* variables; RESCORE_TRACING=1 turns it on too.
    tracing: bool = Field(False, description="export OpenTelemetry traces over OTLP (otel extra; OTEL_* variables "
                                             "configure it; RESCORE_TRACING=1 also turns it on)")

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0] or "0.0.0.0"

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @field_validator("upstreams", "sidecars", mode="before")
    @classmethod
    def _split_list(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and info.field_name == "sidecars":
            from rescore_sidecar.connectors._sidecar.dns import split_targets  # keeps ipv4:a:p,b:p whole

            return split_targets(value)
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value not in ("text", "json"):
            raise ValueError(f"expected text or json, got {value!r}")
        return value

    @field_validator("default_enabled", "sidecar_tls", "upstream_insecure", "tracing", mode="before")
    @classmethod
    def _bool(cls, value: Any, info: Any) -> bool:
        return _parse_bool(info.field_name, value)

    @field_validator("rescore", "breaker", mode="before")
    @classmethod
    def _mapping(cls, value: Any, info: Any) -> Any:
        parsed = _parse_json(info.field_name, value)
        if parsed is None:
            return {}
        if not isinstance(parsed, Mapping):
            raise ValueError("expected a mapping")
        return dict(parsed)

    @field_validator("experiment", mode="before")
    @classmethod
    def _experiment(cls, value: Any) -> Any:
        parsed = _parse_json("experiment", value)
        if parsed is None or parsed == "":
            return None
        if not isinstance(parsed, Mapping):
            raise ValueError("expected a mapping {name, mode, arms}")
        unknown = set(parsed) - {"name", "mode", "arms"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)} in experiment")
        return {**dict(parsed), "arms": list(_parse_arms(parsed.get("arms", [])))}

    @field_validator("arms", mode="before")
    @classmethod
    def _arms(cls, value: Any) -> tuple[dict[str, Any], ...]:
        return _parse_arms(value)

    @model_validator(mode="after")
    def _check(self) -> ProxyConfig:
        if not self.upstreams:
            raise ConfigError("upstreams: at least one upstream URL is required (--upstream)")
        for url in self.upstreams:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"upstreams: {url!r} must start with http:// or https://")
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"listen: {self.listen!r} must be HOST:PORT")
        if bool(self.upstream_client_key) and not self.upstream_client_cert:
            raise ConfigError("upstream_client_key needs upstream_client_cert")
        self.connector_config()  # rescoring options, arms and breaker are the core's to check
        return self

    def connector_config(self) -> ConnectorConfig:
        """The connector core's configuration: the proxy reranks exactly as the Python wrappers do."""
        try:
            default = RerankOptions().replace({**self.rescore, "enabled": self.default_enabled})
            breaker = BreakerConfig(**self.breaker)
            arms = tuple(Arm(name=a["name"], weight=a["weight"],
                             options=None if a["options"] is None else default.replace(
                                 {**a["options"], "enabled": True}))
                         for a in self.arms)
            experiment = None
            if self.experiment is not None:
                experiment = Experiment(
                    name=str(self.experiment.get("name", "")), mode=str(self.experiment.get("mode", "interleave")),
                    events=self.experiment_events,
                    arms=tuple(Arm(name=a["name"], weight=a["weight"], options=None if a["options"] is None else
                                   default.replace({**a["options"], "enabled": True}))
                               for a in self.experiment["arms"]))
            return ConnectorConfig(default=default, arms=arms, ab_salt=self.ab_salt, experiment=experiment,
                                   sidecar=SidecarClientConfig(targets=self.sidecars or ("127.0.0.1:50051",),
                                                         budget_ms=self.budget_ms, breaker=breaker,
                                                         tls=self.sidecar_tls, ca_file=self.sidecar_ca,
                                                         client_cert_file=self.sidecar_client_cert,
                                                         client_key_file=self.sidecar_client_key,
                                                         tls_server_name=self.sidecar_server_name,
                                                         auth_token=self.sidecar_token,
                                                         auth_token_file=self.sidecar_token_file))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"rescoring settings: {exc}") from None


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"expected a boolean, got {value!r}")


def _parse_json(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc}") from None


def _parse_arms(value: Any) -> tuple[dict[str, Any], ...]:
    """[{name, weight, options: {...}}]; `options: null` or `enabled: false` = control arm."""
    value = _parse_json("arms", value)
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise ConfigError("expected a list of {name, weight, options}")
    arms = []
    for item in value:
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError(f"each arm needs a name, got {item!r}")
        unknown = set(item) - {"name", "weight", "enabled", "options"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)} in arm {item['name']!r}")
        try:
            weight = float(item.get("weight", 1.0))
        except (TypeError, ValueError):
            raise ConfigError(f"weight of {item['name']!r} must be a number") from None
        options = item.get("options", {})
        if options is not None and not isinstance(options, Mapping):
            raise ConfigError(f"options of {item['name']!r} must be a mapping")
        control = options is None or not _parse_bool("arms.enabled", item.get("enabled", True))
        arms.append({"name": str(item["name"]), "weight": weight,
                     "options": None if control else dict(options)})
    return tuple(arms)


def flag_name(field: str) -> str:
    """The field's name as a flag / variable stem: `upstreams` -> `upstream`."""
    return FLAG_NAMES.get(field, field)


def env_name(field: str) -> str:
    """The environment variable of a field: `max_json_depth` -> `RESCORE_PROXY_MAX_JSON_DEPTH`."""
    return ENV_PREFIX + flag_name(field).upper()


def _file_values(path: str) -> dict[str, Any]:
    try:
        data = settings.read_yaml(path)
    except ValueError as exc:
        raise ConfigError(f"config: {exc}") from None
    # Accept the flag spelling too (`upstream:` as well as `upstreams:`, dashes as underscores).
    aliases = {v: k for k, v in FLAG_NAMES.items()}
    data = {aliases.get(str(k).replace("-", "_"), str(k).replace("-", "_")): v for k, v in data.items()}
    unknown = set(data) - set(ProxyConfig.model_fields)
    if unknown:
        raise ConfigError(f"config: unknown keys {sorted(unknown)} in {path}")
    return data


def build_parser() -> argparse.ArgumentParser:
    """The CLI's flags, one per `ProxyConfig` field, values parsed by the model as from env/YAML.
    (Here rather than in cli.py so that `load_config(argv)` needs no import of the CLI.)"""
    parser = argparse.ArgumentParser(
        prog="rescore-sidecar proxy", argument_default=argparse.SUPPRESS,
        description="HTTP reverse proxy in front of Elasticsearch/OpenSearch that reranks searches "
                    f"through the sidecar. Every flag is also environment {ENV_PREFIX}<FLAG>.")
    parser.add_argument("--config", help=f"YAML file with the same keys as the flags (snake_case); env {ENV_PREFIX}CONFIG")
    # Booleans take a value (`--default-enabled off`), as they always have.
    settings.add_flags(parser, ProxyConfig, flag_name=flag_name, bool_switches=False)
    return parser


def load_config(argv: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> ProxyConfig:
    """Defaults < YAML (`--config`/`RESCORE_PROXY_CONFIG`) < environment < flags."""
    environ = os.environ if environ is None else environ
    flags = vars(build_parser().parse_args(list(argv)))
    config_path = flags.pop("config", None) or environ.get(ENV_PREFIX + "CONFIG")
    raw = {**(_file_values(config_path) if config_path else {}),
           **settings.env_values(ProxyConfig, environ, env_name), **flags}
    try:
        return ProxyConfig(**raw)
    except ValidationError as exc:
        raise ConfigError(settings.describe_errors(exc)) from None
