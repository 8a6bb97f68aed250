"""PromQL as the monitoring tests read it: the metric names an expression selects, and every series
name the code exports (the sidecar's, the connectors' and the proxy's registries)."""
from __future__ import annotations

import re

# Series Prometheus itself writes for every target.
PROMETHEUS_SERIES = {"up"}
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
             "gauge": ("",), "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring",
             "group_left", "group_right"}


def exported_series() -> set[str]:
    """Every series name the code can expose: the sidecar's registry, the connectors' (the default
    registry, rescore_connector_*) and one proxy's."""
    from prometheus_client import REGISTRY

    from rescore_sidecar.connectors import metrics as _connector_metrics  # noqa: F401 (registers them)
    from rescore_sidecar.connectors.proxy.metrics import create_metrics
    from rescore_sidecar.sidecar.metrics import REGISTRY as SIDECAR

    names = set()
    for registry in (SIDECAR, REGISTRY, create_metrics().registry):
        for family in registry.collect():
            if family.name.startswith("rescore_"):
                names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions (followed by
    "("), label names (inside {} or by/on/without/ignoring/group_x (...)), strings, ranges, keywords or
    Grafana variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                       # string literals
    expr = re.sub(r"\{[^{}]*\}", "", expr)                                # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                                # ranges, subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)                               # $__rate_interval, ${datasource}
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        name, call = match.group(1), match.group(2)
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names
