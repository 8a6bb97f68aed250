"""The images, built here and run the way the Helm chart runs them.

scripts/build_images.sh starts (installing if need be) a Docker engine, makes the Debian base
with mmdebstrap and builds both images on it: no registry is involved. Each container is then
started from the Deployment that `helm template` renders (args, env, volumes, security context,
resources, probes, grace period), translated to `docker run` by `docker_run_args`, not retyped.
Where Kubernetes differs from one Docker host, the test says so: containers share the host's
network namespace (so the chart's ports are moved to free ones with --set), Service names are
--add-host entries for 127.0.0.1, and a GPU resource or RuntimeClass cannot be given here.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import re
import shutil
import subprocess
import time
import uuid

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rescore_sidecar.proto.rescore.v1 import rescore_pb2, rescore_pb2_grpc
from rescore_sidecar.sidecar.config import DEFAULT_MODEL_NAME, offline_model_dir
from rescore_sidecar.tools.sidecar_process import free_port, sidecar_process

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm"
REPO = "rescore-sidecar-test/rescore-sidecar"  # machine-wide image store: a name of our own
LABEL = "rescore-sidecar-test"
QUERY = "how do rivers shape mountains"
DOCS = ["Rivers carve valleys into mountains over millions of years.",
        "A recipe for banana bread with walnuts.",
        "Glaciers and rivers are the main agents of erosion in mountain ranges.",
        "The stock market closed higher on Tuesday.",
        "Mountain streams carry sediment down to the plains."]
# The baked tiny model as int8 on OpenVINO (the artefact is made at image build time).
TINY_INT8 = "tiny=/opt/rescore/models/tiny,backend=openvino,precision=int8"
# Cold: base + both images from nothing (pip downloads included); warm: seconds.
pytestmark = pytest.mark.timeout(2400)


# --- engine, images, chart -------------------------------------------------------------------

@pytest.fixture(scope="module")
def docker() -> str:
    proc = subprocess.run([str(ROOT / "scripts/ensure_docker.sh")], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        if os.geteuid() != 0:
            pytest.skip(f"no Docker engine and not root to install one: {proc.stderr.strip()[-300:]}")
        pytest.fail(f"scripts/ensure_docker.sh failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip()


def _build(*args: str, env: dict | None = None, cwd: pathlib.Path = ROOT) -> dict[str, str]:
    """Runs build_images.sh; returns {flavor: image reference}."""
    proc = subprocess.run([str(cwd / "scripts/build_images.sh"), *args], capture_output=True, text=True,
                          timeout=2000, env={**os.environ, "IMAGE_REPO": REPO, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-6000:]
    refs = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    return {ref.rsplit("-", 1)[1]: ref for ref in refs}


@pytest.fixture(scope="module")
def images(docker) -> dict[str, str]:
    """Both images, built from the made Debian base (not a registry's)."""
    refs = _build("cpu", "gpu", env={"IMAGE_TAG": "test"})
    assert set(refs) == {"cpu", "gpu"}
    for ref in refs.values():
        base = _docker(docker, "image", "inspect", "--format", "{{json .RootFS.Layers}}", ref)
        made = _docker(docker, "image", "inspect", "--format", "{{json .RootFS.Layers}}",
                       _base_tag(docker))
        assert json.loads(base)[:len(json.loads(made))] == json.loads(made), f"{ref} is not built on the made base"
    return refs


def _base_tag(docker: str) -> str:
    return subprocess.run([str(ROOT / "scripts/ensure_base_image.sh"), docker], capture_output=True,
                          text=True, check=True, timeout=600).stdout.strip()


@pytest.fixture(scope="module")
def baked_image(docker, images, tiny_cross_encoder, tmp_path_factory) -> str:
    """The CPU image with the tiny cross-encoder baked in through BAKE_MODELS=tiny=./tiny, and its
    calibrated int8 OpenVINO artefact made at build time through PREPARE_MODELS.

    Built from a copy of the build context with the model in docker/models/ (as a user would put
    it), so the working tree stays untouched; every layer before the bake step is shared."""
    ctx = tmp_path_factory.mktemp("context")
    for name in ("pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy2(ROOT / name, ctx / name)
    for name in ("sidecar", "connectors", "tools", "proto", "docker", "scripts", "helm"):
        shutil.copytree(ROOT / name, ctx / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(tiny_cross_encoder, ctx / "docker/models/tiny")
    refs = _build("cpu", "--", "--build-arg", "BAKE_MODELS=tiny=./tiny", "--build-arg", f"PREPARE_MODELS={TINY_INT8}",
                  env={"IMAGE_TAG": "baked"}, cwd=ctx)
    return refs["cpu"]


@pytest.fixture(scope="module")
def helm() -> str:
    proc = subprocess.run([str(ROOT / "scripts/ensure_helm.sh")], capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        pytest.skip(f"helm could not be obtained (scripts/ensure_helm.sh): {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip()


def render(helm: str, files: list[str], sets: dict | None = None, set_json: dict | None = None) -> dict:
    """`helm template` of the chart; returns {(kind, name): manifest}."""
    args = [a for f in files for a in ("-f", str(CHART / f))]
    args += [a for k, v in (sets or {}).items() for a in ("--set", f"{k}={v}")]
    args += [a for k, v in (set_json or {}).items() for a in ("--set-json", f"{k}={json.dumps(v)}")]
    proc = subprocess.run([helm, "template", "r", str(CHART), "-n", "search", *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def deployment(manifests: dict, suffix: str = "") -> dict:
    [found] = [m for (kind, name), m in manifests.items()
               if kind == "Deployment" and name.endswith("rescore-sidecar" + suffix)]
    return found


def sidecar_ports() -> dict:
    """Free host ports for the chart's ports (the containers share the host's network)."""
    return {"sidecar.port": free_port(), "sidecar.metricsPort": free_port()}


# --- Pod spec -> docker run -------------------------------------------------------------------

def _quantity(text: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", str(text))
    assert match and match.group(2) in ("", *units), f"quantity {text!r}"
    return int(match.group(1)) * units.get(match.group(2), 1)


def _cpus(text: str) -> float:
    value = float(text[:-1]) / 1000 if str(text).endswith("m") else float(text)
    return min(value, os.cpu_count() or 1)  # docker refuses more CPUs than the host has


def docker_run_args(manifests: dict, dep: dict, image: str, workdir: pathlib.Path, name: str,
                    network: str = "host", add_hosts: tuple[str, ...] = ()) -> list[str]:
    """`docker run` arguments for the Deployment's single container, from the rendered spec."""
    pod = dep["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert "command" not in c, "the chart relies on the image's entrypoint"
    pod_sc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
    args = ["run", "-d", "--name", name, "--label", LABEL, f"--network={network}"]
    args += [f"--add-host={host}:127.0.0.1" for host in add_hosts]
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    if uid is not None:
        args += ["--user", f"{uid}:{gid}" if gid is not None else str(uid)]
    if pod_sc.get("fsGroup") is not None:
        args += ["--group-add", str(pod_sc["fsGroup"])]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    args += [a for cap in sc.get("capabilities", {}).get("drop", []) for a in ("--cap-drop", cap)]
    limits = c.get("resources", {}).get("limits", {})
    if "memory" in limits:
        args += ["--memory", str(_quantity(limits["memory"]))]
    if "cpu" in limits:
        args += ["--cpus", str(_cpus(limits["cpu"]))]
    for env in c.get("env", []):
        assert "value" in env, f"env {env['name']}: only literal values are emulated"
        args += ["-e", f"{env['name']}={env['value']}"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in c.get("volumeMounts", []):
        volume, path = volumes[mount["name"]], mount["mountPath"]
        if "configMap" in volume:
            data = manifests[("ConfigMap", volume["configMap"]["name"])]["data"]
            folder = workdir / f"{name}-{mount['name']}"
            folder.mkdir()
            for key, text in data.items():
                (folder / key).write_text(text)
                (folder / key).chmod(0o644)
            folder.chmod(0o755)
            args += ["--mount", f"type=bind,source={folder},target={path},readonly"]
        elif "emptyDir" in volume and path == "/dev/shm":
            args += ["--shm-size", str(_quantity(volume["emptyDir"].get("sizeLimit", "64Mi")))]
        elif "emptyDir" in volume:  # an empty directory the pod's user can write, as the kubelet makes it
            # (uid=: over a directory of the image, Docker gives the tmpfs that directory's mode
            # and root as owner, whatever mode= says)
            args += ["--tmpfs", f"{path}:rw,exec,mode=1777,uid={uid if uid is not None else 0}"]
        else:
            pytest.fail(f"volume {volume} is not emulated")
    return [*args, image, *c.get("args", [])]


def _docker(docker: str, *args: str, timeout: float = 120, check: bool = True) -> str:
    proc = subprocess.run([docker, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"docker {' '.join(args[:3])}: {proc.stderr.strip()}"
    return proc.stdout.strip()


@pytest.fixture
def containers(docker, tmp_path):
    """Starts containers from rendered Deployments; removes them (and says why one died)."""
    started: list[str] = []

    def start(manifests: dict, dep: dict, image: str, **kwargs) -> str:
        name = f"{LABEL}-{uuid.uuid4().hex[:10]}"
        _docker(docker, *docker_run_args(manifests, dep, image, tmp_path, name, **kwargs))
        started.append(name)
        return name

    yield start
    for name in started:
        subprocess.run([docker, "rm", "-f", "-v", name], capture_output=True, timeout=60)


def logs(docker: str, name: str) -> str:
    proc = subprocess.run([docker, "logs", name], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


def state(docker: str, name: str) -> dict:
    return json.loads(_docker(docker, "inspect", "--format", "{{json .State}}", name))


# --- probes and calls -------------------------------------------------------------------------

def health(address: str, service: str, timeout: float) -> str:
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.RpcError as exc:
        return exc.code().name


def wait_for_probe(docker: str, name: str, probe: dict) -> None:
    """Polls a rendered gRPC probe (service, port, timeout) within its whole budget."""
    budget = probe["periodSeconds"] * probe["failureThreshold"]
    address, service = f"127.0.0.1:{probe['grpc']['port']}", probe["grpc"]["service"]
    deadline = time.monotonic() + budget
    status = "never answered"
    while time.monotonic() < deadline:
        if not state(docker, name)["Running"]:
            pytest.fail(f"container exited before {service!r} was SERVING:\n{logs(docker, name)[-4000:]}")
        status = health(address, service, probe["timeoutSeconds"])
        if status == "SERVING":
            return
        time.sleep(0.5)
    pytest.fail(f"{service!r} at {address}: {status} after the probe's {budget}s:\n{logs(docker, name)[-4000:]}")


def rerank(address: str, model: str = "") -> list[tuple[int, float]]:
    request = rescore_pb2.RerankRequest(query=QUERY, model=model,
                                        documents=[rescore_pb2.Document(id=str(i), text=t) for i, t in enumerate(DOCS)])
    with grpc.insecure_channel(address) as channel:
        reply = rescore_pb2_grpc.RerankerStub(channel).Rerank(request, timeout=60)
    return [(r.index, r.score) for r in reply.results]


def assert_same_scores(got: list, expected: list) -> None:
    """Same order and the same scores (float32 results of the same model, same torch build)."""
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def host_sidecar(tiny_cross_encoder):
    """The same models run outside any container: the reference scores."""
    with sidecar_process({DEFAULT_MODEL_NAME: offline_model_dir(), "tiny": tiny_cross_encoder,
                          "tiny-int8": f"{tiny_cross_encoder},backend=openvino,precision=int8"}) as proc:
        yield proc


def pid1_ids(docker: str, name: str) -> tuple[str, str, str]:
    status = _docker(docker, "exec", name, "cat", "/proc/1/status")
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)
    gid = re.search(r"^Gid:\s+(\d+)", status, re.M).group(1)
    cmdline = _docker(docker, "exec", name, "cat", "/proc/1/cmdline").replace("\0", " ")
    return uid, gid, cmdline


def stop_like_kubelet(docker: str, name: str, dep: dict, during=lambda: None, settle: float = 0.0):
    """preStop hook, then `during()` (a call to have in flight), then SIGTERM with the rendered
    grace period; returns (seconds taken, what `during` returned)."""
    pod = dep["spec"]["template"]["spec"]
    grace = pod["terminationGracePeriodSeconds"]
    started = time.monotonic()
    pre_stop = pod["containers"][0].get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    if pre_stop:
        _docker(docker, "exec", name, *pre_stop, timeout=grace)
    pending = during()
    time.sleep(settle)
    left = max(1, int(grace - (time.monotonic() - started)))
    _docker(docker, "stop", "-t", str(left), name, timeout=grace + 30)
    return time.monotonic() - started, pending


# --- tests ------------------------------------------------------------------------------------

def test_default_values_run_the_cpu_image(docker, images, helm, containers, host_sidecar):
    ports = sidecar_ports()
    manifests = render(helm, [], ports)
    dep = deployment(manifests)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"].endswith("-cpu")
    name = containers(manifests, dep, images["cpu"])
    wait_for_probe(docker, name, c["startupProbe"])
    wait_for_probe(docker, name, c["livenessProbe"])

    # The sidecar itself is PID 1 (signals reach it), as the non-root user the chart asks for.
    uid, gid, cmdline = pid1_ids(docker, name)
    pod_sc = dep["spec"]["template"]["spec"]["securityContext"]
    assert (uid, gid) == (str(pod_sc["runAsUser"]), str(pod_sc["runAsGroup"])) and uid != "0"
    assert "rescore-sidecar serve" in cmdline
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    write = subprocess.run([docker, "exec", name, "touch", "/opt/venv/x"], capture_output=True, text=True)
    assert write.returncode != 0 and "Read-only file system" in write.stderr

    # On CPU the image runs OpenVINO (backend auto), from the IR made at build time beside the
    # bundled model (read-only to this user): nothing is exported at start.
    started = logs(docker, name)
    assert re.search(rf"loaded model {DEFAULT_MODEL_NAME} .* on openvino/cpu as fp32", started), started[-3000:]
    assert "using the OpenVINO fp32 artefact" in started and "building the OpenVINO" not in started, started[-3000:]

    # The default values serve the bundled model; its scores equal the same model run outside.
    address = f"127.0.0.1:{ports['sidecar.port']}"
    assert_same_scores(rerank(address), rerank(host_sidecar.address, DEFAULT_MODEL_NAME))
    metrics = httpx.get(f"http://127.0.0.1:{ports['sidecar.metricsPort']}/metrics", timeout=10)
    assert metrics.status_code == 200 and "rescore_requests_total" in metrics.text

    # Stop as the kubelet does (preStop hook, then SIGTERM) while a large request is in flight:
    # the request completes, the sidecar exits 0 within the grace period.
    big = rescore_pb2.RerankRequest(query=QUERY, documents=[rescore_pb2.Document(text=f"{i} " + " ".join(DOCS) * 3)
                                                            for i in range(32)])
    with concurrent.futures.ThreadPoolExecutor(1) as pool, grpc.insecure_channel(address) as channel:
        started = time.monotonic()
        assert len(rescore_pb2_grpc.RerankerStub(channel).Rerank(big, timeout=120).results) == 32
        alone = time.monotonic() - started  # how long it takes; SIGTERM comes a fraction of that after it
        took = stop_like_kubelet(docker, name, dep, during=lambda: pool.submit(
            rescore_pb2_grpc.RerankerStub(channel).Rerank, big, timeout=120), settle=min(0.5, alone / 4))
        try:
            assert len(took[1].result().results) == 32
        except grpc.RpcError as exc:
            pytest.fail(f"in-flight request failed on SIGTERM after {alone:.1f}s alone: {exc}\n{logs(docker, name)[-3000:]}")
        took = took[0]
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    final = state(docker, name)
    text = logs(docker, name)
    assert final["ExitCode"] == 0 and not final["OOMKilled"], text[-3000:]
    assert took < grace, f"took {took:.1f}s, grace {grace}s"
    assert "draining" in text and "stopped" in text


def test_gpu_values_on_a_machine_without_gpu(docker, images, helm, containers):
    """The GPU profile (device cuda) fails at start, saying why; device auto falls back to CPU.
    (No GPU here: the nvidia.com/gpu limit and the `nvidia` RuntimeClass cannot be given.)"""
    # The profile's hub model is swapped for the bundled one: no hub here, and the device is what
    # this test is about. (With a hub model the sidecar currently contacts the hub first.)
    manifests = render(helm, ["values-gpu.yaml"], sidecar_ports(), {"model.models": []})
    dep = deployment(manifests)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith("-gpu")
    name = containers(manifests, dep, images["gpu"])
    deadline = time.monotonic() + 120
    while state(docker, name)["Running"] and time.monotonic() < deadline:
        time.sleep(0.5)
    final, text = state(docker, name), logs(docker, name)
    assert not final["Running"] and final["ExitCode"] == 1, text[-3000:]
    assert "device 'cuda' requested but CUDA is not available" in text

    ports = sidecar_ports()
    # auto needs dtype auto too: the profile's float16 does not exist on CPU (a clear error as well).
    manifests = render(helm, ["values-gpu.yaml"], {**ports, "sidecar.device": "auto", "sidecar.dtype": "auto"},
                       {"model.models": []})
    dep = deployment(manifests)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    name = containers(manifests, dep, images["gpu"])
    wait_for_probe(docker, name, c["startupProbe"])
    with grpc.insecure_channel(f"127.0.0.1:{ports['sidecar.port']}") as channel:
        models = rescore_pb2_grpc.RerankerStub(channel).ListModels(rescore_pb2.ListModelsRequest(), timeout=10)
    assert [(m.name, m.device, m.dtype) for m in models.models] == [(DEFAULT_MODEL_NAME, "cpu", "float32")]
    assert re.search(r"loaded model .*\bcpu\b", logs(docker, name)), logs(docker, name)[-2000:]


def _exec_rerank(docker: str, name: str, port: int) -> list[tuple[int, float]]:
    """A Rerank call made inside the container (it has no network to reach it from outside)."""
    script = ("import json, sys, grpc\n"
              "from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb, rescore_pb2_grpc as rpc\n"
              "q, docs = json.loads(sys.argv[1])\n"
              "req = pb.RerankRequest(query=q, documents=[pb.Document(text=t) for t in docs])\n"
              f"reply = rpc.RerankerStub(grpc.insecure_channel('127.0.0.1:{port}')).Rerank(req, timeout=60)\n"
              "print(json.dumps([[r.index, r.score] for r in reply.results]))\n")
    out = _docker(docker, "exec", name, "python", "-c", script, json.dumps([QUERY, DOCS]))
    return [(i, s) for i, s in json.loads(out)]


def wait_healthy_inside(docker: str, name: str, port: int, budget: float = 300) -> None:
    """Polls the image's own health check inside a container that has no network to reach it from outside."""
    deadline = time.monotonic() + budget
    check = ["exec", name, "python", "/opt/rescore/bin/healthcheck.py", "--address", f"127.0.0.1:{port}"]
    while subprocess.run([docker, *check], capture_output=True).returncode != 0:
        assert state(docker, name)["Running"] and time.monotonic() < deadline, logs(docker, name)[-4000:]
        time.sleep(0.5)


def test_baked_model_serves_with_no_network(docker, baked_image, helm, containers, host_sidecar):
    """Default values (no models named) on an image with a model baked in, with --network none:
    the baked model is what is served, and it needs nothing from outside."""
    ports = sidecar_ports()
    manifests = render(helm, [], ports)
    dep = deployment(manifests)
    name = containers(manifests, dep, baked_image, network="none")
    wait_healthy_inside(docker, name, ports["sidecar.port"])
    assert "SERVING models tiny" in logs(docker, name)
    assert_same_scores(_exec_rerank(docker, name, ports["sidecar.port"]), rerank(host_sidecar.address, "tiny"))
    interfaces = _docker(docker, "exec", name, "cat", "/proc/net/dev")
    assert [ln.split(":")[0].strip() for ln in interfaces.splitlines()[2:]] == ["lo"]


def test_int8_artefact_baked_at_build_time_is_served_as_is(docker, baked_image, helm, containers, host_sidecar):
    """model.models asks for the baked model as OpenVINO int8: the artefact PREPARE_MODELS made at
    build time is loaded from the read-only image (no calibration at start, no network), and its
    scores equal the same int8 model made outside (the calibration is deterministic)."""
    ports = sidecar_ports()
    entry = {"name": "tiny", "source": "/opt/rescore/models/tiny", "backend": "openvino", "precision": "int8"}
    manifests = render(helm, [], ports, {"model.models": [entry]})
    dep = deployment(manifests)
    name = containers(manifests, dep, baked_image, network="none")
    wait_healthy_inside(docker, name, ports["sidecar.port"])
    text = logs(docker, name)
    assert "using the OpenVINO int8 artefact of /opt/rescore/models/tiny in /opt/rescore/models/tiny/openvino/" in text, \
        text[-3000:]
    assert "building the OpenVINO" not in text and "loaded model tiny " in text and "as int8" in text, text[-3000:]
    assert_same_scores(_exec_rerank(docker, name, ports["sidecar.port"]), rerank(host_sidecar.address, "tiny-int8"))


@pytest.fixture(scope="module")
def opensearch():
    from rescore_sidecar.tools.localnode import start_node

    node = start_node("opensearch")
    try:
        yield node
    finally:
        node.stop()


def test_proxy_values_in_front_of_a_real_engine(docker, images, baked_image, helm, containers, opensearch,
                                                host_sidecar):
    """values-cpu + values-proxy: the proxy container (host network) in front of a real OpenSearch
    node on loopback, calling the sidecar container through the chart's Service name; a search
    comes back reranked exactly as the Python connector reranks it with the same model outside."""
    from rescore_sidecar.connectors import ConnectorConfig, RerankOptions, RescoringOpenSearch, SidecarClientConfig

    index = "images-proxy"
    lines = "".join(json.dumps({"index": {"_index": index, "_id": str(i)}}) + "\n"
                    + json.dumps({"title": f"doc {i}", "body": f"mountain {text}"}) + "\n" for i, text in enumerate(DOCS))
    httpx.delete(f"{opensearch.url}/{index}", timeout=30)
    httpx.post(f"{opensearch.url}/_bulk?refresh=true", content=lines.encode(),
               headers={"Content-Type": "application/x-ndjson"}, timeout=30).raise_for_status()

    ports = {**sidecar_ports(), "proxy.port": free_port(), "proxy.upstream[0]": opensearch.url}
    # The CPU profile's hub model cannot be downloaded here: serve the image's baked model instead.
    manifests = render(helm, ["values-cpu.yaml", "values-proxy.yaml"], ports, {"model.models": []})
    sidecar_dep, proxy_dep = deployment(manifests), deployment(manifests, "-proxy")
    sidecar = containers(manifests, sidecar_dep, baked_image)
    wait_for_probe(docker, sidecar, sidecar_dep["spec"]["template"]["spec"]["containers"][0]["startupProbe"])
    # The chart's Services for the sidecar (ClusterIP and headless: the proxy targets the headless
    # one to spread over pods) all lead to the one sidecar container here.
    services = (sidecar_dep["metadata"]["name"], f"{sidecar_dep['metadata']['name']}-headless")
    assert all(("Service", name) in manifests for name in services)
    proxy_container = proxy_dep["spec"]["template"]["spec"]["containers"][0]
    assert proxy_container["image"].endswith("-cpu")
    proxy = containers(manifests, proxy_dep, images["cpu"], add_hosts=services)
    url = f"http://127.0.0.1:{ports['proxy.port']}"
    deadline = time.monotonic() + 60
    while True:
        assert state(docker, proxy)["Running"], logs(docker, proxy)[-4000:]
        try:
            if httpx.get(url + proxy_container["readinessProbe"]["httpGet"]["path"], timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, logs(docker, proxy)[-4000:]
        time.sleep(0.5)
    assert pid1_ids(docker, proxy)[0] == "10001"

    body = {"query": {"match": {"body": "mountain"}}, "size": 5}
    through = httpx.post(f"{url}/{index}/_search", json=body, timeout=60)
    assert through.status_code == 200, through.text
    assert through.headers.get("x-rescore") == "reranked", (dict(through.headers), logs(docker, proxy)[-3000:])
    options = yaml.safe_load(manifests[("ConfigMap", proxy_dep["metadata"]["name"])]["data"]["proxy.yaml"])["rescore"]
    config = ConnectorConfig(default=RerankOptions(window=options["window"], fields=tuple(options["fields"]), model="tiny"),
                             sidecar=SidecarClientConfig(targets=(host_sidecar.address,), budget_ms=10_000))
    expected = RescoringOpenSearch(opensearch.client(), config).search(index=index, body=body)
    got = through.json()["hits"]["hits"]
    assert [h["_id"] for h in got] == [h["_id"] for h in expected["hits"]["hits"]]
    assert [h["_score"] for h in got] == pytest.approx([h["_score"] for h in expected["hits"]["hits"]], rel=1e-5)
    direct = httpx.post(f"{opensearch.url}/{index}/_search", json=body, timeout=60).json()["hits"]["hits"]
    assert sorted(h["_id"] for h in direct) == sorted(h["_id"] for h in got)


def test_code_change_rebuild_keeps_the_dependency_layer(docker, images, tmp_path):
    """A rebuild after a code change re-uses the dependency layer (torch is not reinstalled)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for name in ("pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy2(ROOT / name, ctx / name)
    for name in ("sidecar", "connectors", "tools", "proto", "docker", "scripts", "helm"):
        shutil.copytree(ROOT / name, ctx / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with open(ctx / "sidecar/__init__.py", "a") as f:
        f.write(f"\n# code change {uuid.uuid4().hex}\n")
    proc = subprocess.run([str(ctx / "scripts/build_images.sh"), "cpu"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "IMAGE_REPO": REPO, "IMAGE_TAG": "codechange"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    subprocess.run([docker, "rmi", f"{REPO}:codechange-cpu"], capture_output=True, timeout=120)

    def outcome(marker: str) -> str:  # BuildKit's plain log: "#N [stage 5/17] RUN ..." then "#N CACHED|DONE"
        step = re.search(rf"^#(\d+) \[[^\]]*\] RUN .*{re.escape(marker)}", proc.stderr, re.M).group(1)
        return re.search(rf"^#{step} (CACHED|DONE|ERROR)", proc.stderr, re.M).group(1)

    assert outcome("-r requirements.txt") == "CACHED", proc.stderr[-4000:]
    assert outcome("--no-build-isolation") == "DONE", proc.stderr[-4000:]
