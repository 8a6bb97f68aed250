"""The brownout window against a real sidecar made slow by SIGSTOP bursts: the window sent shrinks
(down to its floor, never off) and searches keep being reranked through the bursts; `_rescore` says
the window and why. The engine is a plain function (50 hits), so no engine node is needed."""
from __future__ import annotations

import threading
import time

import pytest

from rescore_sidecar.connectors import (BreakerConfig, ConnectorConfig, RerankOptions, Rescorer, SidecarClient,
                                        SidecarClientConfig)
from rescore_sidecar.tools.sidecar_process import sidecar_process

pytestmark = pytest.mark.integration

WORDS = "apple banana cherry river mountain engine cloud stone paper glass".split()


def engine(body: dict, params: dict) -> dict:
    size = body.get("size", 10)
    hits = [{"_index": "i", "_id": str(i), "_score": 100.0 - i,
             "_source": {"text": " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 12))}}
            for i in range(size)]
    return {"took": 1, "hits": {"total": {"value": size, "relation": "eq"}, "max_score": 100.0, "hits": hits}}


def bursts(proc, stop: threading.Event, pause_s: float = 0.6, run_s: float = 0.4) -> None:
    """SIGSTOP for `pause_s`, SIGCONT for `run_s`, until `stop`; always left running."""
    try:
        while not stop.is_set():
            proc.pause()
            stop.wait(pause_s)
            proc.resume()
            stop.wait(run_s)
    finally:
        proc.resume()


def test_window_shrinks_under_sigstop_bursts_and_searches_keep_being_reranked(tiny_cross_encoder):
    body = {"query": {"match": {"text": "river stone"}}, "size": 10}
    with sidecar_process({"tiny": tiny_cross_encoder}) as proc:
        # The breaker is the last resort: lenient here, so what keeps reranking going is the window.
        breaker = BreakerConfig(failure_rate=1.0, slow_call_rate=1.0, minimum_calls=1000)
        config = ConnectorConfig(default=RerankOptions(window=50, window_steps=(30, 20, 10), window_floor=10),
                                 sidecar=SidecarClientConfig(targets=(proc.address,), budget_ms=250.0, retry=False,
                                                             breaker=breaker))
        with Rescorer(config, sidecar=SidecarClient(config.sidecar)) as rescorer:
            calm = [rescorer.search(engine, body, {})["_rescore"] for _ in range(3)]
            assert [(m["reranked"], m["window"], m["window_reason"]) for m in calm] == [(True, 50, None)] * 3

            stop = threading.Event()
            burster = threading.Thread(target=bursts, args=(proc, stop), daemon=True)
            marks, started = [], time.monotonic()
            burster.start()
            try:
                while time.monotonic() - started < 6.0:
                    marks.append(rescorer.search(engine, body, {})["_rescore"])
            finally:
                stop.set()
                burster.join(5)
            after = [rescorer.search(engine, body, {})["_rescore"] for _ in range(3)]

    windows = [m["window"] for m in marks]
    assert min(windows) == 10, windows  # shrank to the floor ...
    assert all(m["skipped"] is None for m in marks), marks  # ... and never off
    shrunk = [m for m in marks if m["window"] < 50]
    assert {m["window_reason"] for m in shrunk} <= {"timeouts", "latency", "queue"}
    reranked_small = [m for m in shrunk if m["reranked"]]
    # Through the bursts, searches kept being reranked with the smaller window.
    assert len(reranked_small) >= 3, [(m["window"], m["reranked"], m["fallback"]) for m in marks]
    assert all(m["reranked"] for m in after), after
    print(f"\n{len(marks)} searches in 6 s of bursts: {sum(m['reranked'] for m in marks)} reranked, windows "
          f"{sorted(set(windows), reverse=True)}, fallbacks {sum(bool(m['fallback']) for m in marks)}")
