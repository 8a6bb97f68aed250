"""Session-wide real engine nodes for integration tests.

`engine_node` is parametrized over both engines; each engine is started at most once per
test run (on first use) and stopped when the session ends. Pick versions with
`RESCORE_OPENSEARCH_VERSION` / `RESCORE_ELASTICSEARCH_VERSION` (a major such as `3`, or X.Y.Z).
"""
from __future__ import annotations

import pytest

from rescore_sidecar.tools.localnode import ENGINES, LocalNode, start_node


class _NodePool:
    """Starts each engine once, lazily; stops them all at session end."""

    def __init__(self) -> None:
        self._nodes: dict[str, LocalNode] = {}

    def get(self, engine: str) -> LocalNode:
        if engine not in self._nodes:
            self._nodes[engine] = start_node(engine)
        return self._nodes[engine]

    def stop_all(self) -> None:
        while self._nodes:
            _, node = self._nodes.popitem()
            node.stop()


@pytest.fixture(scope="session")
def engine_pool():
    pool = _NodePool()
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session", params=ENGINES)
def engine_node(request, engine_pool) -> LocalNode:
    """A running node; tests using it run once per engine."""
    return engine_pool.get(request.param)


@pytest.fixture(scope="session")
def opensearch_node(engine_pool) -> LocalNode:
    return engine_pool.get("opensearch")


@pytest.fixture(scope="session")
def elasticsearch_node(engine_pool) -> LocalNode:
    return engine_pool.get("elasticsearch")


@pytest.fixture(scope="session")
def jaeger():
    """A real Jaeger (OTLP in, query API out) on loopback for the session; skips with the reason where it
    cannot be built (tools/jaeger.py builds it from Go modules once per machine, minutes on 2 cores)."""
    from rescore_sidecar.tools.jaeger import JaegerUnavailable, ensure_jaeger, jaeger_process

    try:
        binary = ensure_jaeger()
    except JaegerUnavailable as exc:
        pytest.skip(f"jaeger unavailable: {exc}")
    with jaeger_process(binary) as proc:
        yield proc
