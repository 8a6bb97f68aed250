"""Spans recorded in memory for the tracing tests: the SDK's InMemorySpanExporter behind this
process's `connectors.tracing` (installed, not set globally: the global provider is set once)."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from rescore_sidecar.connectors import tracing


@pytest.fixture
def spans() -> Iterator[Any]:
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.reset()
        provider.shutdown()


def named(exporter: Any, name: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def one(exporter: Any, name: str) -> Any:
    found = named(exporter, name)
    assert len(found) == 1, f"{len(found)} spans named {name}: {[s.name for s in exporter.get_finished_spans()]}"
    return found[0]


def is_child(child: Any, parent: Any) -> bool:
    return (child.parent is not None and child.parent.span_id == parent.context.span_id
            and child.context.trace_id == parent.context.trace_id)


def traceparent_of(span: Any) -> str:
    """The `00-TRACE-SPAN` head of the `traceparent` that names `span` as the parent (flags left off)."""
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}"


def head(traceparent: str) -> str:
    """A `traceparent` without its flags, to compare with `traceparent_of`."""
    return traceparent.rsplit("-", 1)[0]
