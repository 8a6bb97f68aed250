"""helm/: the Grafana dashboard ConfigMap and the PrometheusRule (both off by default). Rendered by the
real helm; the dashboard is the JSON file in the chart; the alerts read only exported metrics, parse
(`promtool check rules`), fire on the series they are about and stay quiet on healthy ones
(`promtool test rules`), and each links to its section in docs/runbooks.md. promtool is Prometheus'
own tool: scripts/ensure_promtool.sh installs Debian's `prometheus` package for it when missing (root);
where it cannot, those two tests skip and say so."""
from __future__ import annotations

import json
import pathlib
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_helm import CHART, KUBE_VERSIONS, ROOT, helm, render  # noqa: F401 (helm is a fixture)
from tests.support.promql import PROMETHEUS_SERIES, exported_series, metric_names

pytestmark = pytest.mark.timeout(1500)  # the first helm call may build helm (tests/deploy/test_helm.py)
ON = {"metrics.dashboard.enabled": "true", "metrics.prometheusRule.enabled": "true",
      "metrics.serviceMonitor.enabled": "true"}
ALERTS = ["RescoreFallbackRateHigh", "RescoreQueueSaturated", "RescoreReplicaEjected", "RescoreModelNotReady"]


def _of_kind(manifests: dict, kind: str) -> dict:
    found = {name: m for (k, name), m in manifests.items() if k == kind}
    return found


def _rules(manifests: dict) -> list[dict]:
    (rule,) = _of_kind(manifests, "PrometheusRule").values()
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_off_by_default(helm):
    manifests = render(helm)
    assert not _of_kind(manifests, "PrometheusRule")
    assert not [name for (kind, name) in manifests if kind == "ConfigMap" and name.endswith("-dashboard")]


def test_dashboard_config_map_for_the_grafana_sidecar(helm):
    manifests = render(helm, sets={"metrics.dashboard.enabled": "true",
                                   "metrics.dashboard.annotations.grafana_folder": "Search"})
    board = manifests[("ConfigMap", "r-rescore-sidecar-dashboard")]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["metadata"]["annotations"] == {"grafana_folder": "Search"}
    assert json.loads(board["data"]["rescore-sidecar.json"]) == json.loads(
        (CHART / "dashboards" / "rescore-sidecar.json").read_text())
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(board, version, strict=True)
    relabelled = render(helm, sets={"metrics.dashboard.enabled": "true", "metrics.dashboard.labels.grafana_dashboard": "rescore",
                                    "metrics.dashboard.labels.team": "search"})
    labels = relabelled[("ConfigMap", "r-rescore-sidecar-dashboard")]["metadata"]["labels"]
    assert labels["grafana_dashboard"] == "rescore" and labels["team"] == "search"


def test_lint_with_monitoring_on(helm):
    sets = {**ON, "proxy.enabled": "true", "proxy.upstream[0]": "http://es:9200"}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    proc = subprocess.run([helm, "lint", "--strict", str(CHART), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_service_monitors_scrape_each_pod_once_and_the_proxy(helm):
    manifests = render(helm, sets={**ON, "proxy.enabled": "true", "proxy.upstream[0]": "http://es:9200"})
    monitors = _of_kind(manifests, "ServiceMonitor")
    assert set(monitors) == {"r-rescore-sidecar", "r-rescore-sidecar-proxy"}
    services = _of_kind(manifests, "Service")

    def selected(monitor: dict) -> list[str]:
        selector = monitor["spec"]["selector"]
        picked = []
        for name, svc in services.items():
            labels = svc["metadata"]["labels"]
            if selector["matchLabels"].items() <= labels.items() and all(
                    e["operator"] == "DoesNotExist" and e["key"] not in labels for e in selector.get("matchExpressions", [])):
                picked.append(name)
        return picked

    # Both sidecar Services reach the same pods: only one may be scraped, or every rate counts twice.
    assert selected(monitors["r-rescore-sidecar"]) == ["r-rescore-sidecar"]
    assert "r-rescore-sidecar-headless" in services
    assert selected(monitors["r-rescore-sidecar-proxy"]) == ["r-rescore-sidecar-proxy"]
    proxy_endpoint = monitors["r-rescore-sidecar-proxy"]["spec"]["endpoints"][0]
    assert proxy_endpoint["path"] == "/_rescore/metrics"
    assert proxy_endpoint["port"] in [p["name"] for p in services["r-rescore-sidecar-proxy"]["spec"]["ports"]]
    assert "r-rescore-sidecar-proxy" not in _of_kind(render(helm, sets=ON), "ServiceMonitor")


def test_alerts_read_exported_metrics_and_link_their_runbook(helm):
    rules = _rules(render(helm, sets=ON))
    assert [r["alert"] for r in rules] == ALERTS
    series = exported_series() | PROMETHEUS_SERIES
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", runbooks, flags=re.M)}
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names and not names - series, f"{rule['alert']}: {sorted(names - series)} not exported"
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://") and url.split("#")[1] in anchors, f"{rule['alert']}: {url}"
        assert rule["labels"]["severity"] in ("warning", "critical")
    # The sidecar's alerts read this release's pods only (job = the Service the ServiceMonitor scrapes).
    by_name = {r["alert"]: r for r in rules}
    assert 'namespace="search", job="r-rescore-sidecar"' in by_name["RescoreModelNotReady"]["expr"]


def test_queue_threshold_follows_the_sidecar_setting(helm):
    from rescore_sidecar.sidecar.config import SidecarConfig

    default = SidecarConfig.model_fields["max_queue_pairs"].default
    expr = {r["alert"]: r["expr"] for r in _rules(render(helm, sets=ON))}["RescoreQueueSaturated"]
    assert f"> {default * 4 // 5}\n" in expr  # 80% of the sidecar's own default
    expr = {r["alert"]: r["expr"] for r in _rules(render(helm, sets={**ON, "sidecar.config.max_queue_pairs": 1000}))}
    assert "> 800\n" in expr["RescoreQueueSaturated"]
    expr = {r["alert"]: r["expr"] for r in _rules(render(helm, sets={**ON, "metrics.prometheusRule.queueDepth": 50}))}
    assert "> 50\n" in expr["RescoreQueueSaturated"]


@pytest.fixture(scope="module")
def promtool() -> str:
    proc = subprocess.run([str(ROOT / "scripts/ensure_promtool.sh")], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.skip(f"promtool could not be obtained (scripts/ensure_promtool.sh): {proc.stderr.strip()[-500:]}; "
                    "rule syntax and firing untested")
    return proc.stdout.strip()


def _write_rules(helm: str, path: pathlib.Path, *, annotations: bool = True) -> None:
    (rule,) = _of_kind(render(helm, sets=ON), "PrometheusRule").values()
    groups = rule["spec"]["groups"]
    if not annotations:  # `promtool test rules` compares annotations too; these tests are about when alerts fire
        groups = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
                  for g in groups]
    path.write_text(yaml.safe_dump({"groups": groups}))


def test_rules_pass_promtool_check(helm, promtool, tmp_path):
    _write_rules(helm, tmp_path / "rules.yaml")
    proc = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout


SIDECAR = 'namespace="search", job="r-rescore-sidecar"'
PROXY = 'namespace="search", job="proxy"'
# One minute per sample. Each alert: series that must fire it and healthy series beside them that must not.
SERIES = [
    # 6 of 60 searches a minute fall back (10%), against 1 of 60 (1.7%) in another job.
    (f'rescore_connector_fallbacks_total{{{PROXY}, reason="timeout"}}', "0+6x40"),
    (f'rescore_connector_searches_total{{{PROXY}, outcome="reranked", arm=""}}', "0+60x40"),
    ('rescore_connector_fallbacks_total{namespace="search", job="app", reason="timeout"}', "0+1x40"),
    ('rescore_connector_searches_total{namespace="search", job="app", outcome="reranked", arm=""}', "0+60x40"),
    # pod a: 17000 queued (> 16000); pod b: 100 queued; pod c: refusing with RESOURCE_EXHAUSTED.
    (f'rescore_queue_depth{{{SIDECAR}, pod="a", model="m"}}', "17000x40"),
    (f'rescore_queue_depth{{{SIDECAR}, pod="b", model="m"}}', "100x40"),
    (f'rescore_errors_total{{{SIDECAR}, pod="c", code="RESOURCE_EXHAUSTED"}}', "0+5x40"),
    (f'rescore_errors_total{{{SIDECAR}, pod="b", code="DEADLINE_EXCEEDED"}}', "0+5x40"),
    # endpoint 1 ejected throughout; endpoint 2 ejected once for two minutes.
    (f'rescore_connector_endpoint_ejected{{{PROXY}, target="t", endpoint="10.0.0.1:50051"}}', "1x40"),
    (f'rescore_connector_endpoint_ejected{{{PROXY}, target="t", endpoint="10.0.0.2:50051"}}', "0x10 1 1 0x28"),
    # pod a never loads its model; pod b does; pod c cannot be scraped at all.
    (f'up{{{SIDECAR}, instance="a:9400", pod="a"}}', "1x40"),
    (f'up{{{SIDECAR}, instance="b:9400", pod="b"}}', "1x40"),
    (f'rescore_model_info{{{SIDECAR}, instance="b:9400", pod="b", model="m", kind="cross-encoder", device="cpu", dtype="float32"}}', "1x40"),
    (f'up{{{SIDECAR}, instance="c:9400", pod="c"}}', "0x40"),
    # another release's pod without a model: not this release's alert.
    ('up{namespace="other", job="r-rescore-sidecar", instance="d:9400", pod="d"}', "1x40"),
]
EXPECTED = {
    "RescoreFallbackRateHigh": [{"namespace": "search", "job": "proxy", "severity": "warning"}],
    "RescoreQueueSaturated": [{"namespace": "search", "pod": "a", "model": "m", "severity": "warning"},
                              {"namespace": "search", "pod": "c", "severity": "warning"}],
    "RescoreReplicaEjected": [{"namespace": "search", "job": "proxy", "target": "t", "endpoint": "10.0.0.1:50051",
                               "severity": "warning"}],
    "RescoreModelNotReady": [{"namespace": "search", "job": "r-rescore-sidecar", "instance": f"{pod}:9400", "pod": pod,
                              "severity": "critical"} for pod in ("a", "c")],
}


def test_alerts_fire_on_their_series_and_not_on_healthy_ones(helm, promtool, tmp_path):
    _write_rules(helm, tmp_path / "rules.yaml", annotations=False)
    early = [{"eval_time": "3m", "alertname": name, "exp_alerts": []} for name in ALERTS]  # `for:` not yet elapsed
    late = [{"eval_time": "30m", "alertname": name, "exp_alerts": [{"exp_labels": labels} for labels in expected]}
            for name, expected in EXPECTED.items()]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in SERIES],
                   "alert_rule_test": early + late}]}))
    proc = subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
