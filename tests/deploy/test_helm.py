"""helm/: the real helm binary lints and renders the chart for each profile; every manifest is
validated offline against the Kubernetes JSON schemas (strict: unknown fields fail), then the
fields that matter in production are checked. helm comes from scripts/ensure_helm.sh (built
from Go modules once, cached in ~/.cache/rescore-sidecar/bin)."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm"
PROFILES = {"default": [], "gpu": ["values-gpu.yaml"], "cpu": ["values-cpu.yaml"], "proxy": ["values-proxy.yaml"]}
# Oldest and newest Kubernetes the chart is validated against (native gRPC probes are GA since 1.27).
KUBE_VERSIONS = ["1.29.0", "1.37.0"]
NO_BUILTIN_SCHEMA = {"ServiceMonitor"}  # a Prometheus Operator CRD
# The first test may build helm (~2-3 min on 2 cores on a fresh machine); each helm call has its own timeout.
pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def helm() -> str:
    proc = subprocess.run([str(ROOT / "scripts/ensure_helm.sh")], capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        pytest.skip(f"helm could not be obtained (scripts/ensure_helm.sh): {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip()


def _args(profile: str, sets: dict | None) -> list[str]:
    args = [a for f in PROFILES[profile] for a in ("-f", str(CHART / f))]
    return args + [a for k, v in (sets or {}).items() for a in ("--set", f"{k}={v}")]


def render(helm: str, profile: str = "default", sets: dict | None = None) -> dict:
    """Renders the chart; returns {(kind, name): manifest}."""
    proc = subprocess.run([helm, "template", "r", str(CHART), "-n", "search", *_args(profile, sets)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def render_error(helm: str, sets: dict, profile: str = "default") -> str:
    proc = subprocess.run([helm, "template", "r", str(CHART), *_args(profile, sets)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, f"rendered although {sets} is invalid"
    return proc.stderr


def only(manifests: dict, kind: str, suffix: str = "") -> dict:
    found = [m for (k, name), m in manifests.items() if k == kind and name.endswith("rescore-sidecar" + suffix)]
    assert len(found) == 1, f"{kind} {suffix!r}: {list(manifests)}"
    return found[0]


def container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("profile", PROFILES)
def test_lint_and_kubernetes_schemas(helm, profile):
    proc = subprocess.run([helm, "lint", "--strict", str(CHART), *_args(profile, None)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifests = render(helm, profile)
    for (kind, name), manifest in manifests.items():
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                assert kind in NO_BUILTIN_SCHEMA, f"no schema for {kind} {name}"
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{kind} {name} invalid for Kubernetes {version}: {exc}")


def test_gpu_limit_only_when_asked(helm):
    for profile in ("default", "cpu", "proxy"):
        spec = only(render(helm, profile), "Deployment")["spec"]["template"]["spec"]
        assert "nvidia.com/gpu" not in yaml.safe_dump(spec), profile
        assert "runtimeClassName" not in spec
    gpu = only(render(helm, "gpu", {"gpu.count": 2}), "Deployment")["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert gpu["runtimeClassName"] == "nvidia"
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    assert "podAntiAffinity" in gpu["affinity"]
    assert "cuda" in render_error(helm, {"gpu.enabled": "true", "sidecar.device": "cpu"})


def test_native_grpc_probes_and_startup_budget(helm):
    c = container(only(render(helm), "Deployment"))
    assert c["startupProbe"]["grpc"] == {"port": 50051, "service": "rescore.v1.Reranker"}
    assert c["readinessProbe"]["grpc"] == {"port": 50051, "service": "rescore.v1.Reranker"}
    assert c["livenessProbe"]["grpc"] == {"port": 50051, "service": ""}
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "too short for a model download"
    moved = container(only(render(helm, sets={"sidecar.port": 6000}), "Deployment"))
    assert moved["readinessProbe"]["grpc"]["port"] == 6000 and moved["ports"][0]["containerPort"] == 6000


def test_restricted_security_context_on_every_pod(helm):
    manifests = render(helm, "proxy")
    deployments = [m for (kind, _), m in manifests.items() if kind == "Deployment"]
    assert len(deployments) == 2  # sidecar + proxy
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        sc = container(d)["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "tmp", "mountPath": "/tmp"} in container(d)["volumeMounts"]  # read-only root needs it


def test_volumes_and_model_source(helm):
    pod = only(render(helm, sets={"model.pvc.claimName": "models", "cache.existingClaim": "hf-cache",
                                  "model.hubToken.existingSecret": "hf", "model.offline": "true"}), "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == "hf-cache"
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert env["HF_HUB_OFFLINE"]["value"] == "1" and env["HF_HOME"]["value"] == "/var/cache/rescore/huggingface"
    default_env = {e["name"] for e in container(only(render(helm), "Deployment"))["env"]}
    assert not default_env & {"HF_TOKEN", "HF_HUB_OFFLINE"}


@pytest.mark.parametrize("profile", PROFILES)
def test_rendered_config_loads_in_the_real_sidecar(helm, profile, tmp_path, monkeypatch):
    from rescore_sidecar.sidecar.config import load_config

    for key in [k for k in os.environ if k.startswith("RESCORE_")]:
        monkeypatch.delenv(key)
    config_map = only(render(helm, profile), "ConfigMap")
    path = tmp_path / "config.yaml"
    path.write_text(config_map["data"]["config.yaml"])
    config = load_config(config_file=path)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert config.port == 50051 and config.drain_seconds == values["sidecar"]["drainSeconds"]
    if profile == "gpu":
        assert (config.device, config.dtype) == ("cuda", "float16")
        assert [(m.name, m.source) for m in config.models] == [("bge", "BAAI/bge-reranker-base")]


def test_termination_grace_exceeds_prestop_plus_drain(helm):
    pod = only(render(helm, sets={"sidecar.drainSeconds": 60}), "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 5 + 60 + 10
    assert pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert "must exceed" in render_error(helm, {"sidecar.terminationGracePeriodSeconds": 25})


def test_hpa_on_queue_depth_and_optional_cpu(helm):
    default = render(helm)
    assert not any(kind == "HorizontalPodAutoscaler" for kind, _ in default)
    assert only(default, "Deployment")["spec"]["replicas"] == 1
    gpu = render(helm, "gpu")
    assert "replicas" not in only(gpu, "Deployment")["spec"]  # the HPA owns it
    hpa = only(gpu, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == only(gpu, "Deployment")["metadata"]["name"]
    assert hpa["spec"]["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": "rescore_queue_depth"},
                                                               "target": {"type": "AverageValue", "averageValue": "64"}}}]
    cpu_metrics = only(render(helm, "cpu"), "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}} in cpu_metrics


def test_pdb_and_network_policy_select_the_sidecar_pods(helm):
    manifests = render(helm, "proxy")
    sidecar_labels = only(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    proxy_labels = only(manifests, "Deployment", "-proxy")["spec"]["template"]["metadata"]["labels"]
    selects = lambda selector, labels: selector.items() <= labels.items()
    assert selects(only(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], sidecar_labels)
    assert not selects(only(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], proxy_labels)
    policy = only(manifests, "NetworkPolicy")["spec"]
    assert selects(policy["podSelector"]["matchLabels"], sidecar_labels)
    assert not selects(policy["podSelector"]["matchLabels"], proxy_labels)
    grpc_rule, metrics_rule = policy["ingress"]
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert any(selects(peer["podSelector"]["matchLabels"], proxy_labels) for peer in grpc_rule["from"])
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}] and metrics_rule["from"]
    # No client peers at all must mean no gRPC rule, never an empty `from` (which allows everyone).
    closed = only(render(helm, sets={"networkPolicy.clients": "null"}), "NetworkPolicy")["spec"]["ingress"]
    assert [r["ports"][0]["port"] for r in closed] == ["metrics"]


def test_proxy_points_at_the_sidecar_service(helm):
    manifests = render(helm, "proxy")
    sidecar_svc = only(manifests, "Service")
    proxy = container(only(manifests, "Deployment", "-proxy"))
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    # The headless Service (every pod's address), so the proxy spreads calls over the pods.
    assert env["RESCORE_PROXY_SIDECAR"] == f"{sidecar_svc['metadata']['name']}-headless:50051"
    assert env["RESCORE_PROXY_UPSTREAM"] == "https://opensearch.search.svc:9200"
    assert env["RESCORE_PROXY_LISTEN"] == "0.0.0.0:9201"
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/_rescore/health"
    arms = yaml.safe_load(only(manifests, "ConfigMap", "-proxy")["data"]["proxy.yaml"])["arms"]
    assert [a["name"] for a in arms] == ["control", "rerank"]
    assert only(manifests, "Service", "-proxy")["spec"]["ports"][0]["port"] == 9201
    assert "proxy.upstream" in render_error(helm, {"proxy.enabled": "true"})
    assert not any(name.endswith("-proxy") for _, name in render(helm))


@pytest.mark.parametrize("sets, message", [
    ({"gpu.count": "one"}, "/gpu/count"),
    ({"replicaCount": "many"}, "/replicaCount"),
    ({"sidecar.dtype": "int8"}, "/sidecar/dtype"),
    ({"sidecar.typo": 1}, "typo"),
    ({"autoscaling.cpu.targetUtilization": 150}, "/autoscaling/cpu/targetUtilization"),
    ({"proxy.upstream[0]": "opensearch:9200"}, "/proxy/upstream/0"),
])
def test_schema_rejects_wrong_values(helm, sets, message):
    assert message in render_error(helm, sets)


def _leaf_paths(values: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        is_tree = isinstance(value, dict) and value and key not in ("resources", "behavior", "nodeSelector", "podSecurityContext", "securityContext")
        paths += _leaf_paths(value, path + ".") if is_tree else [path]
    return paths


def test_schema_and_readme_cover_every_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()

    def check(values: dict, schema: dict, path: str) -> None:
        props = schema.get("properties", {})
        assert set(values) <= set(props), f"{path}: in values.yaml, not in the schema: {set(values) - set(props)}"
        if schema.get("additionalProperties") is False:
            missing = set(props) - set(values) - {"global"}
            assert not missing, f"{path}: in the schema, not in values.yaml: {missing}"
        for key, value in values.items():
            if isinstance(value, dict) and "properties" in props[key]:
                check(value, props[key], f"{path}.{key}")

    check(values, schema, "values")
    undocumented = [p for p in _leaf_paths(values) if f"`{p}`" not in readme]
    assert not undocumented, f"helm/README.md lacks {undocumented}"


def test_model_entries_take_every_per_model_setting_of_the_sidecar():
    """model.models items are the sidecar's ModelSpec: same keys, same choices (backend, precision, ...)."""
    import typing

    from rescore_sidecar.sidecar.config import ModelSpec

    schema = json.loads((CHART / "values.schema.json").read_text())
    items = schema["properties"]["model"]["properties"]["models"]["items"]["properties"]
    assert set(items) == set(ModelSpec.model_fields)
    for key, field in ModelSpec.model_fields.items():
        if typing.get_origin(field.annotation) is typing.Literal:
            assert items[key]["enum"] == list(typing.get_args(field.annotation)), key


def test_notes_render(helm, tmp_path):
    # NOTES.txt is only rendered by install; render it through tpl in a copy of the chart instead.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates/NOTES.txt").rename(chart / "notes.txt")
    (chart / "templates/notes.yaml").write_text('text: |\n{{ tpl (.Files.Get "notes.txt") . | indent 2 }}\n')
    proc = subprocess.run([helm, "template", "r", str(chart), "-n", "search", "-s", "templates/notes.yaml",
                           *_args("gpu", {"proxy.enabled": "true", "proxy.upstream[0]": "http://es:9200"})],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    notes = yaml.safe_load(proc.stdout)["text"]
    assert "dns:///r-rescore-sidecar-headless.search.svc:50051" in notes
    assert "1 nvidia.com/gpu" in notes and "http://r-rescore-sidecar-proxy.search.svc:9201" in notes


def test_rendered_proxy_settings_load_in_the_real_proxy(helm, tmp_path):
    proxy_config = pytest.importorskip("rescore_sidecar.connectors.proxy.config")
    manifests = render(helm, "proxy")
    path = tmp_path / "proxy.yaml"
    path.write_text(only(manifests, "ConfigMap", "-proxy")["data"]["proxy.yaml"])
    proxy = container(only(manifests, "Deployment", "-proxy"))
    assert proxy["args"] == ["proxy", "--config", "/etc/rescore/proxy.yaml"]
    environ = {e["name"]: e["value"] for e in proxy["env"]}
    config = proxy_config.load_config(["--config", str(path)], environ=environ)
    assert config.upstreams == ("https://opensearch.search.svc:9200",)
    assert config.sidecars == ("r-rescore-sidecar-headless:50051",) and config.listen_port == 9201
    arms = config.connector_config().arms  # as the connector core will use them
    assert [(a.name, a.weight) for a in arms] == [("control", 50), ("rerank", 50)]
    assert arms[0].options is None  # enabled: false = control arm, engine order
    assert arms[1].options.policy == "linear" and arms[1].options.model_weight == 0.7
