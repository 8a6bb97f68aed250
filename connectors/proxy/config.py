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

ENV_PREFIX = "RESCORE_PROXY_"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclasses.dataclass(frozen=True)
class Arm:
    """One A/B arm: a share of traffic and what rescoring does for it."""

    name: str
    weight: float = 1.0
    enabled: bool = True
    # Per-request rescoring options for this arm (same keys as the `rescore` section).
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    upstreams: tuple[str, ...] = ()
    listen: str = "0.0.0.0:9201"
    sidecars: tuple[str, ...] = ()
    # Rescore searches that carry no toggle (header, query string or body section).
    default_enabled: bool = True
    # Rescoring options handed to the connector core (window, model, text fields, deadline, ...).
    rescore: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    arms: tuple[Arm, ...] = ()
    # TLS towards the upstream cluster.
    upstream_ca: str | None = None
    upstream_insecure: bool = False
    upstream_client_cert: str | None = None
    upstream_client_key: str | None = None
    # Limits and timeouts (seconds). The request limit matches Elasticsearch's own default.
    max_request_bytes: int = 100 * 1024 * 1024
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
        for name in ("connect_timeout", "upstream_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.max_connections < 0:
            raise ConfigError("max_connections must be >= 0 (0 = unlimited)")
        if bool(self.upstream_client_key) and not self.upstream_client_cert:
            raise ConfigError("upstream_client_key needs upstream_client_cert")
        if self.arms and sum(a.weight for a in self.arms) <= 0:
            raise ConfigError("arms: weights must add up to more than 0")
        if len({a.name for a in self.arms}) != len(self.arms):
            raise ConfigError("arms: names must be unique")


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


def _parse_arms(value: Any) -> tuple[Arm, ...]:
    value = _parse_json("arms", value)
    if not isinstance(value, list):
        raise ConfigError("arms: expected a list of {name, weight, enabled, options}")
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
        if weight < 0:
            raise ConfigError(f"arms: weight of {item['name']!r} must be >= 0")
        options = item.get("options") or {}
        if not isinstance(options, dict):
            raise ConfigError(f"arms: options of {item['name']!r} must be a mapping")
        arms.append(Arm(name=str(item["name"]), weight=weight,
                        enabled=_parse_bool("arms.enabled", item.get("enabled", True)),
                        options=options))
    return tuple(arms)


def _convert(name: str, value: Any) -> Any:
    """Turns a raw value (string from env/flags, or YAML scalar) into the field's type."""
    try:
        if name in ("upstreams", "sidecars"):
            return _split_list(value)
        if name in ("default_enabled", "upstream_insecure"):
            return _parse_bool(name, value)
        if name in ("max_request_bytes", "max_connections"):
            return int(value)
        if name in ("connect_timeout", "upstream_timeout"):
            return float(value)
        if name == "arms":
            return _parse_arms(value)
        if name == "rescore":
            parsed = _parse_json(name, value) or {}
            if not isinstance(parsed, dict):
                raise ConfigError("rescore: expected a mapping of rescoring options")
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
    "sidecars": "sidecar gRPC address(es) HOST:PORT, comma separated; none = never rescore",
    "default_enabled": "rescore searches that carry no toggle (true/false, default true)",
    "rescore": "JSON object of rescoring options for the connector core",
    "arms": "JSON list of A/B arms [{name, weight, enabled, options}]",
    "upstream_ca": "CA bundle (PEM) to verify the upstream's certificate",
    "upstream_insecure": "do not verify the upstream's TLS certificate (true/false)",
    "upstream_client_cert": "client certificate (PEM) presented to the upstream",
    "upstream_client_key": "key of the client certificate (PEM), if not inside the cert file",
    "max_request_bytes": "reject request bodies larger than this with 413 (default 100 MiB)",
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
        parser.add_argument(f"--{_flag(name)}", dest=name, default=None, help=FLAG_HELP.get(name))
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
