"""connectors.tracing itself: nothing imported or exported without the otel extra, the process
set-up from the OTEL_* variables, propagation helpers, and the JSON log line joining a span."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from rescore_sidecar.connectors import logs, tracing
from tests.support.spans import one

# A child interpreter where `opentelemetry` cannot be imported (as without the extra), counting tries.
_BLOCKED = textwrap.dedent("""
    import sys
    tries = []
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "opentelemetry":
                tries.append(name)
                raise ImportError(f"blocked: {name}")
    sys.meta_path.insert(0, Block())
""")


def _child(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RESCORE_"))}
    return subprocess.run([sys.executable, "-c", _BLOCKED + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env={**environ, **env})


def test_without_the_extra_nothing_is_imported_and_searches_still_rerank():
    result = _child("""
        from rescore_sidecar.connectors import ConnectorConfig, RerankOptions, Rescorer, SidecarClient, SidecarClientConfig
        from rescore_sidecar.connectors import logs, tracing
        from rescore_sidecar.connectors.testing import MockSidecar
        from rescore_sidecar.connectors.wrappers import RescoringOpenSearch
        import rescore_sidecar.sidecar.core.service, rescore_sidecar.sidecar.transport.grpc
        import rescore_sidecar.connectors.proxy.app

        config = ConnectorConfig(default=RerankOptions(window=2, fields=("t",)), sidecar=SidecarClientConfig(targets=("a:1",)))
        mock = MockSidecar(lambda a, q, texts: [0.0, 1.0])
        class Engine:
            def search(self, **kw):
                self.headers = kw["headers"]
                return {"hits": {"hits": [{"_id": "0", "_score": 2.0, "_source": {"t": "x"}},
                                          {"_id": "1", "_score": 1.0, "_source": {"t": "y"}}]}}
        engine = Engine()
        client = RescoringOpenSearch(engine, config, rescorer=Rescorer(config, sidecar=SidecarClient(config.sidecar, transport=mock)))
        for _ in range(3):
            out = client.search(body={"query": {"match": {"t": "x"}}})
        assert [h["_id"] for h in out["hits"]["hits"]] == ["1", "0"], out
        assert engine.headers is None and mock.calls[-1].metadata == (), (engine.headers, mock.calls[-1])
        assert tracing.setup("rescore-sidecar", enabled=False) is False
        try:
            tracing.setup("rescore-sidecar", enabled=True)
        except tracing.TracingUnavailable as exc:
            print("refused:", exc)
        assert not [m for m in sys.modules if m.startswith("opentelemetry")]
        print("tries:", len(tries))
    """)
    assert result.returncode == 0, result.stderr
    assert "refused: tracing needs the otel extra" in result.stdout
    tries = int(result.stdout.split("tries:")[1])
    assert tries <= 2, result.stdout  # once by the helpers (then remembered), once by setup's SDK import


def test_sidecar_serve_with_tracing_but_without_the_extra_exits_2_naming_it():
    result = _child("""
        from rescore_sidecar.sidecar.app import serve_main
        sys.exit(serve_main(["--metrics-port", "0", "--port", "0"]))
    """, RESCORE_TRACING="1")
    assert result.returncode == 2, result.stderr
    assert "otel extra" in result.stderr and "rescore-sidecar[otel]" in result.stderr


def test_proxy_takes_rescore_tracing_too_and_without_the_extra_exits_2():
    result = _child("""
        from rescore_sidecar.connectors.proxy.cli import main
        sys.exit(main(["--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0"]))
    """, RESCORE_TRACING="1")
    assert result.returncode == 2, result.stderr
    assert "otel extra" in result.stderr


def test_setup_takes_service_name_and_sampler_from_the_otel_variables():
    pytest.importorskip("opentelemetry.sdk")
    code = """
        from rescore_sidecar.connectors import tracing
        from opentelemetry import trace
        assert tracing.setup("rescore-proxy", enabled=True) is True
        provider = trace.get_tracer_provider()
        print(provider.resource.attributes["service.name"], provider.sampler.get_description())
        tracing.shutdown()
    """
    plain = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "RESCORE_TRACING": "1", "OTEL_TRACES_EXPORTER": "none",
                                "OTEL_SERVICE_NAME": "", "OTEL_TRACES_SAMPLER": "always_on"})
    named = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "RESCORE_TRACING": "1", "OTEL_TRACES_EXPORTER": "none",
                                "OTEL_SERVICE_NAME": "search-edge", "OTEL_TRACES_SAMPLER": "traceidratio",
                                "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    assert plain.returncode == 0 and named.returncode == 0, plain.stderr + named.stderr
    assert plain.stdout.split() == ["rescore-proxy", "AlwaysOnSampler"]
    assert named.stdout.split()[0] == "search-edge" and "0.25" in named.stdout


def test_rescore_tracing_0_turns_the_connectors_spans_off(monkeypatch):
    pytest.importorskip("opentelemetry")
    monkeypatch.setenv("RESCORE_TRACING", "0")
    tracing.reset()
    try:
        assert not tracing.active() and tracing.span(tracing.SEARCH) is tracing.NULL_SPAN
        assert tracing.grpc_metadata(None) is None and tracing.merged({"a": "b"}) == {"a": "b"}
    finally:
        monkeypatch.delenv("RESCORE_TRACING")
        tracing.reset()


def test_inject_and_server_span_continue_one_trace(spans):
    with tracing.span("app") as app:
        carrier = tracing.headers()
        metadata = tracing.grpc_metadata((("authorization", "Bearer t"),))
    assert carrier["traceparent"].split("-")[1] == f"{app.get_span_context().trace_id:032x}"
    assert metadata[0] == ("authorization", "Bearer t") and ("traceparent", carrier["traceparent"]) in metadata
    with tracing.server_span(tracing.RERANK, carrier):
        pass
    server = one(spans, tracing.RERANK)
    assert server.parent.span_id == app.get_span_context().span_id
    assert server.context.trace_id == app.get_span_context().trace_id


def test_json_log_lines_carry_the_current_span_ids(spans, capsys):
    logs.configure("INFO", "json")
    try:
        with tracing.span("work") as span:
            logs.request_line("rerank", {"code": "OK", "took_ms": 1.5})
            logging.getLogger("other").info("plain %s", "message")
    finally:
        logs.configure("WARNING", "text")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    ctx = span.get_span_context()
    assert [line["message"] for line in lines] == ["rerank code=OK took_ms=1.5", "plain message"]
    assert lines[0]["code"] == "OK" and lines[0]["took_ms"] == 1.5 and lines[0]["level"] == "INFO"
    assert {(line["trace_id"], line["span_id"]) for line in lines} == {(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")}


def test_request_lines_are_debug_in_text_logs_and_a_bad_format_is_refused(capsys):
    logs.configure("INFO", "text")
    try:
        logs.request_line("rerank", {"code": "OK"})
    finally:
        logs.configure("WARNING", "text")
    assert "rerank" not in capsys.readouterr().err
    with pytest.raises(ValueError, match="log format 'xml'"):
        logs.configure("INFO", "xml")


def test_the_sidecar_imports_tracing_without_the_client_stack():
    # connectors/__init__ loads its exports lazily: the sidecar's /metrics must not grow the
    # connector's metrics, nor its start-up the client's imports.
    result = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys
        import rescore_sidecar.sidecar.core.accounting, rescore_sidecar.sidecar.core.queue
        heavy = [m for m in sys.modules if m.startswith(("rescore_sidecar.connectors._", "rescore_sidecar.connectors.metrics",
                                                         "rescore_sidecar.connectors.rescoring", "tenacity", "dns"))]
        assert not heavy, heavy
        from rescore_sidecar.connectors import Rescorer  # and the exports still load on use
        print(Rescorer.__name__)
    """)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Rescorer"
