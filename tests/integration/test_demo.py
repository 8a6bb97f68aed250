"""`rescore-sidecar demo` (the README's first command) as a user runs it: a real local engine,
the sidecar on its offline default model; and stopped with Ctrl-C against "your own" cluster."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.support.gate import GatedForwarder

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _addresses(output: str) -> tuple[str, str]:
    engine = re.search(r"^engine:\s+\S+ \S+ at (http://127\.0\.0\.1:\d+)", output, re.M).group(1)
    sidecar = re.search(r"^sidecar:\s+(127\.0\.0\.1:\d+)", output, re.M).group(1)
    return engine, sidecar


def _sigint_as_at_a_terminal() -> None:
    # A job a non-interactive shell starts with `&` inherits SIGINT ignored, and Python then never turns
    # Ctrl-C into KeyboardInterrupt: the demo would rightly keep running. The user at a terminal has it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _demo(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rescore_sidecar.tools", "demo", "--no-progress", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "120", "PYTHONIOENCODING": "utf-8"},
                            preexec_fn=_sigint_as_at_a_terminal)


def test_demo_runs_end_to_end_and_cleans_up() -> None:
    proc = _demo("--queries", "3", "--show", "2")
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    engine_url, sidecar = _addresses(out)
    assert "(local node started for this run)" in out
    assert "all-minilm-l6-v2 (bi-encoder)" in out
    # Two side-by-side blocks, five ranks each, both columns filled.
    blocks = re.findall(r"^Q\d+: ", out, re.M)
    assert len(blocks) == 2
    rows = [line for line in out.splitlines() if re.match(r"^[1-5]\. ", line)]
    assert len(rows) == 10 and all(re.search(r"│ [1-5]\. ", row) for row in rows)
    assert re.search(r"^engine order \(BM25\)\s+0\.\d{3}", out, re.M)
    assert re.search(r"^all-minilm-l6-v2 · window 50 · replace\s+0\.\d{3} \([+-]0\.\d{3}\*?\)", out, re.M)
    assert "95% CI" in out and "Ranking quality over all 3 sample queries" in out
    # The sidecar is warmed before the timed queries, and the output says so and how latency was taken.
    assert "warming the model: 3 untimed queries" in err
    assert err.index("warming the model") < err.index("timed queries")
    assert "the model was warmed first" in out and "score cache bypassed" in out
    assert not _port_open("127.0.0.1", int(engine_url.rsplit(":", 1)[1]))
    assert not _port_open("127.0.0.1", int(sidecar.rsplit(":", 1)[1]))


def test_demo_interrupted_on_your_cluster_cleans_up(opensearch_node) -> None:
    """Ctrl-C while the demo waits on one of its searches: it must stop the sidecar it started and
    delete its index on "your" cluster. The cluster is reached through a forwarder that holds the
    demo's first search, so the interrupt always lands mid-run (a timer raced a warmed-up demo
    that could finish first)."""
    index = "rescore-demo-interrupt"
    with GatedForwarder(opensearch_node.url, hold_if=lambda chunk: b"/_search" in chunk or b"/_msearch" in chunk) as gate:
        proc = _demo("--engine-url", gate.url, "--index", index)
        try:
            assert gate.held.wait(300), proc.stderr.read()[-3000:] if proc.poll() is not None else "no search held"
            assert proc.poll() is None
            proc.send_signal(signal.SIGINT)
            # The held search stays unanswered until the demo has been interrupted; then it is dropped,
            # so it cannot reach the cluster after the clean-up.
            time.sleep(0.5)
            gate.cut()
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted; everything it started has been stopped" in err
    _, sidecar = _addresses(out)
    assert not _port_open("127.0.0.1", int(sidecar.rsplit(":", 1)[1]))
    # The demo index on "your" cluster is gone; the cluster itself is untouched.
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{opensearch_node.url}/{index}", timeout=10)
    assert missing.value.code == 404
    assert opensearch_node.alive()
