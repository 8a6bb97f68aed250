"""Packaging: one namespace, a client install without the model stack, commands that name their extra."""
from __future__ import annotations

import importlib.metadata
import pathlib
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Run in a child interpreter where the server's and the proxy's libraries cannot be imported,
# as in `pip install rescore-sidecar[opensearch]`.
BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'transformers', 'aiohttp', 'pydantic_settings', 'tokenizers'}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
"""


def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=120)


def test_every_package_folder_is_listed_under_the_namespace():
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    found = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *rel)))
    assert found == set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert all(p.startswith("rescore_sidecar.") for p in found)


def test_base_requirements_have_no_model_stack():
    base = [r for r in importlib.metadata.requires("rescore-sidecar") if "extra ==" not in r]
    names = {r.split(";")[0].split(">")[0].split("=")[0].split("[")[0].strip().lower() for r in base}
    assert names.isdisjoint({"torch", "transformers", "aiohttp", "ranx"}), names
    assert "grpcio" in names


def test_client_imports_without_torch():
    result = _child(
        "import rescore_sidecar.connectors as c, rescore_sidecar.proto.rescore.v1.rescore_pb2_grpc\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "print(sorted(c.__all__)[:2])")
    assert result.returncode == 0, result.stderr
    assert "Arm" in result.stdout


def test_serve_without_server_extra_names_the_extra():
    result = _child("from rescore_sidecar.tools.cli import main\nsys.exit(main(['serve']))")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'server' extra" in lines[0] and "rescore-sidecar[server]" in lines[0], lines


def test_proxy_without_proxy_extra_names_the_extra():
    result = _child("from rescore_sidecar.tools.cli import main\nsys.exit(main(['proxy', '--upstream', 'http://127.0.0.1:9', '--listen', '127.0.0.1:0']))")
    assert result.returncode == 2, result.stderr
    assert "'proxy' extra" in result.stderr
