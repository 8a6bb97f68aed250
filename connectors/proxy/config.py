"""Proxy settings: one frozen dataclass, filled from defaults < YAML file < environment < flags.

Every flag `--foo-bar` is also environment `RESCORE_PROXY_FOO_BAR` and YAML key `foo_bar`
(file from `--config` / `RESCORE_PROXY_CONFIG`). Keys that only make sense as structures
(`arms`, `rescore`) come from YAML or from a JSON string in the flag/environment variable.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
from typing import Any, Mapping, Sequence

from rescore_sidecar.connectors.config import Arm, BreakerConfig, ConnectorConfig, RerankOptions, SidecarClientConfig

ENV_PREFIX = "RESCORE_PROXY_"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    upstreams: tuple[str, ...] = ()
    listen: str = "0.0.0.0:9201"
    sidecars: tuple[str, ...] = ()
    # Rescore searches that carry no toggle (header, query string or body section).
    default_enabled: bool = True
    # Default rescoring options of the connector core (`RerankOptions` fields: window, fields, model, ...).
    rescore: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # A/B arms ({name, weight, options}), chosen by the X-Rescore-Key header. An arm's options
    # override the `rescore` defaults; options None = control arm (engine order).
    arms: tuple[Mapping[str, Any], ...] = ()
    ab_salt: str = "rescore"
    # Budget of the whole sidecar step of a search, and the sidecar circuit breaker (`BreakerConfig`).
    budget_ms: float = 250.0
    breaker: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Transport security towards the sidecar(s): TLS (CA bundle, or the system roots with
    # sidecar_tls), mutual TLS (client certificate + key) and the shared bearer token.
    sidecar_tls: bool = False
    sidecar_ca: str | None = None
    sidecar_client_cert: str | None = None
    sidecar_client_key: str | None = None
    sidecar_server_name: str | None = None
    sidecar_token: str = dataclasses.field(default="", repr=False)
    sidecar_token_file: str | None = None
    # TLS towards the upstream cluster.
    upstream_ca: str | None = None
    upstream_insecure: bool = False
    upstream_client_cert: str | None = None
    upstream_client_key: str | None = None
    # Limits and timeouts (seconds). The request limit matches Elasticsearch's own default.
    max_request_bytes: int = 100 * 1024 * 1024
    # Search bodies nested deeper than this get a 400 from the proxy: OpenSearch 2.19 dies with a
    # StackOverflowError on a bool query nested ~350 deep (~1000 JSON levels). 0 = no check.
    max_json_depth: int = 200
    connect_timeout: float = 10.0
    upstream_timeout: float = 300.0
    max_connections: int = 512
    log_level: str = "INFO"

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0] or "0.0.0.0"

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def __post_init__(self) -> None:
        if not self.upstreams:
            raise ConfigError("upstreams: at least one upstream URL is required (--upstream)")
        for url in self.upstreams:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"upstreams: {url!r} must start with http:// or https://")
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"listen: {self.listen!r} must be HOST:PORT")
        if self.max_request_bytes <= 0:
            raise ConfigError("max_request_bytes must be positive")
        if self.max_json_depth < 0:
            raise ConfigError("max_json_depth must be >= 0 (0 = no check)")
        for name in ("connect_timeout", "upstream_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.max_connections < 0:
            raise ConfigError("max_connections must be >= 0 (0 = unlimited)")
        if bool(self.upstream_client_key) and not self.upstream_client_cert:
            raise ConfigError("upstream_client_key needs upstream_client_cert")
        if self.budget_ms <= 0:
            raise ConfigError("budget_ms must be positive")
        self.connector_config()  # rescoring options, arms and breaker are the core's to check

    def connector_config(self) -> ConnectorConfig:
        """The connector core's configuration: the proxy reranks exactly as the Python wrappers do."""
        try:
            default = RerankOptions().replace({**self.rescore, "enabled": self.default_enabled})
            breaker = BreakerConfig(**self.breaker)
            arms = tuple(Arm(name=a["name"], weight=a["weight"],
                             options=None if a["options"] is None else default.replace(
                                 {**a["options"], "enabled": True}))
                         for a in self.arms)
            return ConnectorConfig(default=default, arms=arms, ab_salt=self.ab_salt,
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


def _split_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v).strip() for v in value)


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected a boolean, got {value!r}")


def _parse_json(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}: not valid JSON: {exc}") from None


def _parse_arms(value: Any) -> tuple[dict[str, Any], ...]:
    """[{name, weight, options: {...}}]; `options: null` or `enabled: false` = control arm."""
    value = _parse_json("arms", value)
    if not isinstance(value, list):
        raise ConfigError("arms: expected a list of {name, weight, options}")
    arms = []
    for item in value:
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"arms: each arm needs a name, got {item!r}")
        unknown = set(item) - {"name", "weight", "enabled", "options"}
        if unknown:
            raise ConfigError(f"arms: unknown keys {sorted(unknown)} in arm {item['name']!r}")
        try:
            weight = float(item.get("weight", 1.0))
        except (TypeError, ValueError):
            raise ConfigError(f"arms: weight of {item['name']!r} must be a number") from None
        options = item.get("options", {})
        if options is not None and not isinstance(options, dict):
            raise ConfigError(f"arms: options of {item['name']!r} must be a mapping")
        control = options is None or not _parse_bool("arms.enabled", item.get("enabled", True))
        arms.append({"name": str(item["name"]), "weight": weight,
                     "options": None if control else dict(options)})
    return tuple(arms)


def _convert(name: str, value: Any) -> Any:
    """Turns a raw value (string from env/flags, or YAML scalar) into the field's type."""
    try:
        if name == "sidecars" and isinstance(value, str):
            from rescore_sidecar.connectors.endpoints import split_targets  # keeps ipv4:a:p,b:p whole

            return split_targets(value)
        if name in ("upstreams", "sidecars"):
            return _split_list(value)
        if name in ("default_enabled", "upstream_insecure", "sidecar_tls"):
            return _parse_bool(name, value)
        if name in ("max_request_bytes", "max_connections", "max_json_depth"):
            return int(value)
        if name in ("connect_timeout", "upstream_timeout", "budget_ms"):
            return float(value)
        if name == "arms":
            return _parse_arms(value)
        if name in ("rescore", "breaker"):
            parsed = _parse_json(name, value) or {}
            if not isinstance(parsed, dict):
                raise ConfigError(f"{name}: expected a mapping")
            return parsed
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{name}: invalid value {value!r}") from None
    return None if value is None else str(value)


FIELDS = {f.name for f in dataclasses.fields(ProxyConfig)}
# Flag spelling for fields whose flag reads better singular (`--upstream a,b`).
FLAG_NAMES = {"upstreams": "upstream", "sidecars": "sidecar"}
FLAG_HELP = {
    "upstreams": "engine URL(s), comma separated: round-robin, failover on connection errors",
    "listen": "HOST:PORT to listen on (default 0.0.0.0:9201)",
    "sidecars": "sidecar gRPC target(s), comma separated: HOST:PORT (every address the name resolves to), dns:///HOST:PORT, dns://DNS-IP:PORT/HOST:PORT, ipv4:A:P,B:P; none = never rescore",
    "default_enabled": "rescore searches that carry no toggle (true/false, default true)",
    "rescore": "JSON object of default rescoring options (window, fields, model, policy, ...)",
    "arms": "JSON list of A/B arms [{name, weight, options}], options null = control arm",
    "ab_salt": "salt of the A/B hash of X-Rescore-Key (change to reshuffle users)",
    "budget_ms": "milliseconds a search may spend on the sidecar before falling back (default 250)",
    "breaker": "JSON object of sidecar circuit-breaker settings (window_size, failure_rate, ...)",
    "sidecar_tls": "TLS to the sidecar with the system's trusted roots (true/false; implied by --sidecar-ca)",
    "sidecar_ca": "CA bundle (PEM) to verify the sidecar's certificate (turns on TLS)",
    "sidecar_client_cert": "client certificate chain (PEM) presented to the sidecar (mutual TLS)",
    "sidecar_client_key": "key (PEM) of --sidecar-client-cert",
    "sidecar_server_name": "name expected in the sidecar's certificate, if not the host of --sidecar",
    "sidecar_token": "shared bearer token for the sidecar (prefer --sidecar-token-file or the environment)",
    "sidecar_token_file": "file holding the sidecar's shared bearer token",
    "upstream_ca": "CA bundle (PEM) to verify the upstream's certificate",
    "upstream_insecure": "do not verify the upstream's TLS certificate (true/false)",
    "upstream_client_cert": "client certificate (PEM) presented to the upstream",
    "upstream_client_key": "key of the client certificate (PEM), if not inside the cert file",
    "max_request_bytes": "reject request bodies larger than this with 413 (default 100 MiB)",
    "max_json_depth": "reject search bodies nested deeper than this with 400 (default 200, 0 = off)",
    "connect_timeout": "seconds to open a connection to the upstream (default 10)",
    "upstream_timeout": "seconds for the upstream's whole answer (default 300)",
    "max_connections": "upstream connection pool size (default 512, 0 = unlimited)",
    "log_level": "DEBUG, INFO, WARNING, ERROR (default INFO)",
}


def _flag(name: str) -> str:
    return FLAG_NAMES.get(name, name).replace("_", "-")


def _env_name(name: str) -> str:
    return ENV_PREFIX + FLAG_NAMES.get(name, name).upper()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rescore-sidecar proxy",
        description="HTTP reverse proxy in front of Elasticsearch/OpenSearch that reranks searches "
                    f"through the sidecar. Every flag is also environment {ENV_PREFIX}<FLAG>.")
    parser.add_argument("--config", help="YAML file with the same keys as the flags (snake_case)")
    for name in sorted(FIELDS):
        parser.add_argument(f"--{_flag(name)}", dest=name, default=None, help=FLAG_HELP.get(name),
                            metavar=_flag(name).upper().replace("-", "_"))
    return parser


def _load_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(pathlib.Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping of settings")
    # Accept the flag spelling too (`upstream:` as well as `upstreams:`).
    aliases = {v: k for k, v in FLAG_NAMES.items()}
    data = {aliases.get(k.replace("-", "_"), k.replace("-", "_")): v for k, v in data.items()}
    unknown = set(data) - FIELDS
    if unknown:
        raise ConfigError(f"config: unknown keys {sorted(unknown)} in {path}")
    return data


def load_config(argv: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> ProxyConfig:
    """Defaults < YAML (`--config`/`RESCORE_PROXY_CONFIG`) < environment < flags."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(list(argv))
    raw: dict[str, Any] = {}
    config_path = args.config or environ.get(ENV_PREFIX + "CONFIG")
    if config_path:
        raw.update(_load_yaml(config_path))
    for name in FIELDS:
        if _env_name(name) in environ:
            raw[name] = environ[_env_name(name)]
        if getattr(args, name) is not None:
            raw[name] = getattr(args, name)
    values = {name: _convert(name, value) for name, value in raw.items()}
    return ProxyConfig(**values)
