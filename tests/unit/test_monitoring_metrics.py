"""The chart's Grafana dashboard (helm/dashboards/rescore-sidecar.json) reads only metrics the code
exports: every PromQL expression's metric names are looked up in the registries of the sidecar, the
connectors and the proxy, so a renamed metric breaks this test, not a dashboard in production.
tests/deploy/test_helm_monitoring.py checks the alert rules the same way (tests/support/promql.py)."""
from __future__ import annotations

import json
import pathlib
import re

import pytest

from tests.support.promql import PROMETHEUS_SERIES, exported_series, metric_names

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "dashboards" / "rescore-sidecar.json"


def dashboard_expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(where, expr) for every panel target and every query variable."""
    found = []

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            expr = query["query"] if isinstance(query, dict) else query
            # label_values(metric, label): the metric is the first argument.
            found.append((f"variable {variable['name']}", re.sub(r"^label_values\((\w+),\s*\w+\)$", r"\1", expr)))
    return found


def test_metric_names_reads_promql_as_prometheus_would():
    expr = ('histogram_quantile(0.99, sum by (le, model) (rate(rescore_queue_wait_seconds_bucket'
            '{namespace=~"$namespace", code="OK"}[$__rate_interval]))) / on (job) group_left(model) up '
            'or vector(0) > bool 1 unless max_over_time(other_metric:recorded[5m:1m])')
    assert metric_names(expr) == {"rescore_queue_wait_seconds_bucket", "up", "other_metric:recorded"}
    assert metric_names('sum(rate(rescore_pairs_scored_total{model="x by (y)"}[1m]))') == {"rescore_pairs_scored_total"}


def test_exported_series_are_the_code_s_metrics():
    series = exported_series()
    # One of each kind, as Prometheus names its series: counters _total, histograms _bucket/_sum/_count.
    assert {"rescore_pairs_scored_total", "rescore_queue_depth", "rescore_queue_wait_seconds_bucket",
            "rescore_connector_fallbacks_total", "rescore_proxy_requests_total",
            "rescore_proxy_added_latency_seconds_count"} <= series
    assert "rescore_queue_depth_total" not in series and "rescore_pairs_scored" not in series


def test_every_dashboard_expression_names_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    series = exported_series() | PROMETHEUS_SERIES
    expressions = dashboard_expressions(dashboard)
    assert len(expressions) > 20
    for where, expr in expressions:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - series
        assert not unknown, f"{where}: {sorted(unknown)} are exported by nothing in the code ({expr})"


def test_dashboard_covers_what_an_operator_looks_at():
    """The issue's list: pairs/s, queue depth and wait, batch size and padding, latency per hop, cache hit
    rate, fallbacks by reason, breaker state, window in use."""
    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(metric_names(expr) for _, expr in dashboard_expressions(dashboard)))
    assert {"rescore_pairs_scored_total", "rescore_queue_depth", "rescore_queue_wait_seconds_bucket",
            "rescore_batch_size_bucket", "rescore_batch_padding_ratio_sum", "rescore_request_duration_seconds_bucket",
            "rescore_connector_sidecar_seconds_bucket", "rescore_proxy_added_latency_seconds_bucket",
            "rescore_cache_hits_total", "rescore_cache_misses_total", "rescore_connector_fallbacks_total",
            "rescore_connector_breaker_open", "rescore_connector_window", "rescore_connector_endpoint_ejected"} <= used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert dashboard["uid"] == "rescore-sidecar"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]  # works with any Prometheus


@pytest.mark.parametrize("expr", ["rate(rescore_no_such_metric_total[5m])", "rescore_queue_depth_total"])
def test_a_made_up_metric_is_caught(expr):
    assert metric_names(expr) - exported_series()
