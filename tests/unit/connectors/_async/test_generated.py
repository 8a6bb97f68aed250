"""The sync twins of the async modules are generated (scripts/unasync.py) and kept fresh."""
from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[4]
_spec = importlib.util.spec_from_file_location("unasync", ROOT / "scripts" / "unasync.py")
unasync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(unasync)


def test_generated_sync_modules_are_fresh():
    assert unasync.stale() == [], "run: python scripts/unasync.py"


def test_a_changed_source_makes_its_sync_twin_stale(tmp_path, monkeypatch):
    for source, target in unasync.FILES.items():
        for path in (source, target):
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / source).write_text((ROOT / source).read_text())
        (tmp_path / target).write_text((ROOT / target).read_text())
    monkeypatch.setattr(unasync, "ROOT", tmp_path)
    assert unasync.stale() == []
    source = next(iter(unasync.FILES))
    (tmp_path / source).write_text((tmp_path / source).read_text() + "\nEXTRA = 1\n")
    assert unasync.stale() == [unasync.FILES[source]]
    assert unasync.main([]) == 0 and unasync.stale() == []


def test_rewrite_drops_async_and_renames_keeping_alignment():
    source = ("from typing import Any, Awaitable, Callable\n"
              "from rescore_sidecar.connectors._async.client import AsyncSidecarClient\n"
              "Call = Callable[[dict], Awaitable[dict]]\n\n"
              "class AsyncRescorer:\n"
              "    async def search(self, engine: Call, body: dict,\n"
              "                     params: dict) -> Any:\n"
              "        async with self.lock:\n"
              "            return await engine(body)\n\n"
              "    async def __aenter__(self) -> AsyncRescorer:\n"
              "        return self  # awaited: not a keyword here\n")
    assert unasync.unasync(source) == (
        "from typing import Any, Callable\n"
        "from rescore_sidecar.connectors._sidecar.client import SidecarClient\n"
        "Call = Callable[[dict], dict]\n\n"
        "class Rescorer:\n"
        "    def search(self, engine: Call, body: dict,\n"
        "               params: dict) -> Any:\n"
        "        with self.lock:\n"
        "            return engine(body)\n\n"
        "    def __enter__(self) -> Rescorer:\n"
        "        return self  # awaited: not a keyword here\n")
