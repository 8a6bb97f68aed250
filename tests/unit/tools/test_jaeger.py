"""tools/jaeger.py without building Jaeger: a stand-in `go` on PATH records its calls, so the cache,
the lock, the atomic install and the reasons given when the build cannot happen are checked in
milliseconds (tests/integration/test_tracing_export.py runs the real program)."""
from __future__ import annotations

import pathlib
import stat
import threading

import pytest
import yaml

from rescore_sidecar.tools import jaeger

FAKE_GO = """#!/bin/sh
echo "$@" >> "{calls}"
case "$1" in
  get) {get} ;;
  build) sleep {sleep}; printf '#!/bin/sh\\necho jaeger\\n' > jaeger; chmod +x jaeger ;;
esac
"""


@pytest.fixture
def fake_go(tmp_path, monkeypatch):
    """Installs a `go` stand-in; returns (write(get=..., sleep=...), calls file)."""
    bindir, calls = tmp_path / "bin", tmp_path / "go-calls"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")  # first: found before any real go
    monkeypatch.setenv("RESCORE_CACHE_DIR", str(tmp_path / "cache"))

    def write(get: str = "true", sleep: float = 0) -> pathlib.Path:
        go = bindir / "go"
        go.write_text(FAKE_GO.format(calls=calls, get=get, sleep=sleep))
        go.chmod(go.stat().st_mode | stat.S_IEXEC)
        return calls

    return write


def test_config_listens_on_the_given_loopback_ports_only():
    config = yaml.safe_load(jaeger.config_yaml(otlp_grpc=1001, otlp_http=1002, query_http=1003, query_grpc=1004))
    endpoints = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                endpoints.append(value) if key == "endpoint" else walk(value)

    walk(config)
    assert sorted(endpoints) == [f"127.0.0.1:{p}" for p in (1001, 1002, 1003, 1004)]
    assert config["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]
    assert config["service"]["telemetry"]["metrics"]["level"] == "none"  # no fixed :8888 listener
    assert config["extensions"]["jaeger_query"]["enable_tracing"] is False  # nothing sent to :4317


def test_builds_once_into_the_cache(fake_go, tmp_path):
    calls = fake_go()
    lines = []
    path = jaeger.ensure_jaeger(progress=lines.append)
    assert path == tmp_path / "cache" / "jaeger" / jaeger.VERSION / "jaeger"
    assert path.read_text().endswith("echo jaeger\n") and jaeger.cached_binary() == path
    logged = calls.read_text().splitlines()
    assert logged[0] == "mod init rescore-sidecar/jaeger-build"
    assert logged[1] == f"get -tool {jaeger.MODULE}@{jaeger.VERSION}"
    assert logged[2].startswith("build ") and logged[2].endswith(f"-o jaeger {jaeger.MODULE}")
    assert any("built in" in line for line in lines)
    assert not list(path.parent.glob(".build.*"))  # the staging folder is gone
    assert jaeger.ensure_jaeger(progress=None) == path
    assert len(calls.read_text().splitlines()) == 3  # cached: go not run again
    assert jaeger.main(["path"]) == 0


def test_parallel_callers_build_once(fake_go):
    calls = fake_go(sleep=0.3)
    results: list[pathlib.Path] = []
    threads = [threading.Thread(target=lambda: results.append(jaeger.ensure_jaeger(progress=None))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 3
    assert sum(line.startswith("build ") for line in calls.read_text().splitlines()) == 1


def test_a_failed_build_says_why_and_leaves_nothing(fake_go, tmp_path):
    fake_go(get="echo 'dial tcp: lookup proxy.golang.org: no such host' >&2; exit 1")
    with pytest.raises(jaeger.JaegerUnavailable, match="no such host") as err:
        jaeger.ensure_jaeger(progress=None)
    assert "exit 1" in str(err.value)
    assert jaeger.cached_binary() is None
    assert not list((tmp_path / "cache" / "jaeger" / jaeger.VERSION).glob(".build.*"))
    assert jaeger.main(["path"]) == 1


def test_no_go_toolchain_is_a_reason_to_skip(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("RESCORE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(jaeger.JaegerUnavailable, match="`go` is not installed"):
        jaeger.ensure_jaeger(progress=None)
