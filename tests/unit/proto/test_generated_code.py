"""The checked-in generated code must match proto/: regenerate and compare."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_current(tmp_path):
    pytest.importorskip("grpc_tools")
    gen = _load_generator()
    out = tmp_path / "pb"
    out.mkdir()
    gen.generate(out)
    fresh = {p.relative_to(out): p.read_text() for p in out.rglob("*") if p.is_file()}
    checked_in = {p.relative_to(gen.OUT_DIR): p.read_text() for p in gen.OUT_DIR.rglob("*")
                  if p.suffix in (".py", ".pyi") and "__pycache__" not in p.parts}
    assert fresh.keys() == checked_in.keys()
    stale = [str(path) for path in fresh if fresh[path] != checked_in[path]]
    assert not stale, f"proto/ generated code is stale for {stale}: run `make proto` and commit"
