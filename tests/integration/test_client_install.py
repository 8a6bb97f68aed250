"""A real client-only install: `pip install rescore-sidecar[opensearch]` into a fresh virtual
environment (what an application server does) brings no model stack, wraps an OpenSearch client
against a scripted sidecar, and `serve` names the extra it lacks."""
from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> pathlib.Path:
    work = tmp_path_factory.mktemp("client")
    # Built from a copy of the sources: building in the checkout would leave build/ there, and
    # setuptools' build/lib keeps modules deleted since, which would then ship in the wheel.
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("sidecar", "connectors", "tools", "proto"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           "-c", str(ROOT / "constraints.txt"), f"{source}[opensearch]"],
                          capture_output=True, text=True, timeout=800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return python


def test_client_install_has_no_model_stack(client_venv):
    installed = subprocess.run([str(client_venv), "-m", "pip", "list", "--format", "freeze"],
                               capture_output=True, text=True, check=True).stdout.lower()
    names = {line.split("==")[0] for line in installed.splitlines()}
    assert {"rescore-sidecar", "opensearch-py", "grpcio"} <= names
    assert names.isdisjoint({"torch", "transformers", "tokenizers", "openvino", "aiohttp", "nvidia-cublas"}), names
    site = subprocess.run([str(client_venv), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    top = {p.name for p in pathlib.Path(site).iterdir()}
    assert "rescore_sidecar" in top and not top & {"sidecar", "connectors", "tools", "proto"}, sorted(top)


def test_client_install_reranks_through_a_wrapper(client_venv):
    # The wrapper over a real opensearch-py client whose transport is faked by its own
    # perform_request, and the shipped MockSidecar under the real sidecar client.
    script = textwrap.dedent("""
        import sys
        from opensearchpy import OpenSearch
        from rescore_sidecar.connectors import (ConnectorConfig, RerankOptions, Rescorer, RescoringOpenSearch,
                                                SidecarClient, SidecarClientConfig)
        from rescore_sidecar.connectors.testing import MockSidecar

        hits = [{"_index": "i", "_id": str(n), "_score": 3.0 - n, "_source": {"body": text}}
                for n, text in enumerate(["cats", "rivers shape mountains", "dogs"])]
        engine = OpenSearch("http://127.0.0.1:9")
        engine.transport.perform_request = lambda method, url, **kw: {
            "took": 1, "timed_out": False, "hits": {"total": {"value": 3, "relation": "eq"},
            "max_score": 3.0, "hits": hits}}
        config = ConnectorConfig(default=RerankOptions(window=3, fields=("body",)),
                                 sidecar=SidecarClientConfig(targets=("127.0.0.1:1",)))
        mock = MockSidecar.script([0.1, 0.9, 0.5])
        rescorer = Rescorer(config, sidecar=SidecarClient(config.sidecar, transport=mock))
        with RescoringOpenSearch(engine, config, rescorer=rescorer) as client:
            resp = client.search(index="i", body={"query": {"match": {"body": "rivers"}}, "size": 3})
        assert "torch" not in sys.modules, "the client imported torch"
        print([h["_id"] for h in resp["hits"]["hits"]], resp["_rescore"]["reranked"])
    """)
    proc = subprocess.run([str(client_venv), "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "['1', '2', '0'] True"


def test_serve_without_the_server_extra_names_it(client_venv):
    cli = client_venv.parent / "rescore-sidecar"
    proc = subprocess.run([str(cli), "serve"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "rescore-sidecar[server]" in lines[0], proc.stderr
