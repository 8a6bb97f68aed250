"""The brownout window and selective reranking through Rescorer / AsyncRescorer and `MockSidecar`:
the window sent shrinks and widens with the sidecar's reported queue wait and timeouts (fake clock,
no wall-clock budget in play), a pinned window is honoured, the floor holds, `_rescore` says the
window and why, the selective threshold skips exactly the searches the predictor marks."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from rescore_sidecar.connectors import (AsyncRescorer, AsyncSidecarClient, BreakerConfig, ConnectorConfig,
                                        RerankOptions, Rescorer, SidecarClient, SidecarClientConfig, metrics)
from rescore_sidecar.connectors._core.brownout import Brownout
from rescore_sidecar.connectors._core.selective import top_gap
from rescore_sidecar.connectors.testing import Fault, MockSidecar

BODY = {"query": {"match": {"text": "fox"}}, "size": 3}
NO_BREAKER = BreakerConfig(minimum_calls=1000, window_size=1000)


def config(targets=("w:1",), **options) -> ConnectorConfig:
    return ConnectorConfig(default=RerankOptions(window=8, window_steps=(4, 2), **options),
                           sidecar=SidecarClientConfig(targets=targets, retry=False, budget_ms=250.0,
                                                       breaker=NO_BREAKER))


def answer(scores) -> dict:
    hits = [{"_index": "i", "_id": str(i), "_score": s, "_source": {"text": f"doc {i}" + " fox" * i}}
            for i, s in enumerate(scores)]
    return {"took": 1, "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": scores[0], "hits": hits}}


FLAT = [float(10 - i) for i in range(10)]  # evenly spaced: top_gap = 1/9


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Run:
    def __init__(self, kind: str, mock: MockSidecar, cfg: ConnectorConfig):
        self.kind, self.clock = kind, Clock()
        brownout = Brownout(cfg, clock=self.clock)
        if kind == "sync":
            self.rescorer = Rescorer(cfg, sidecar=SidecarClient(cfg.sidecar, transport=mock), brownout=brownout)
        else:
            self.rescorer = AsyncRescorer(cfg, sidecar=AsyncSidecarClient(cfg.sidecar, transport=mock),
                                          brownout=brownout)

    def search(self, scores=FLAT, **kw) -> dict:
        if self.kind == "sync":
            return self.rescorer.search(lambda b, p: answer(scores), BODY, {}, **kw)

        async def engine(b, p):
            return answer(scores)

        return asyncio.run(self.rescorer.search(engine, BODY, {}, **kw))

    def msearch(self, searches, scores=FLAT, **kw) -> dict:
        def engine(lines, p):
            return {"took": 1, "responses": [answer(scores) for _ in lines[1::2]]}
        if self.kind == "sync":
            return self.rescorer.msearch(engine, searches, {}, **kw)

        async def engine_async(lines, p):
            return engine(lines, p)

        return asyncio.run(self.rescorer.msearch(engine_async, searches, {}, **kw))


@pytest.fixture(params=["sync", "async"])
def kind(request):
    return request.param


def window_of(out: dict) -> tuple:
    m = out["_rescore"]
    return m["window"], m["window_reason"], m["reranked"], m["skipped"]


def test_queue_wait_shrinks_the_window_step_by_step_then_it_widens_again(kind):
    mock = MockSidecar(queue_ms=250.0)  # twice the queue wait over the budget: pressure 2
    run = Run(kind, mock, config())
    seen = []
    for advance in (0, 0, 0, 1, 0, 1):
        run.clock.now += advance
        seen.append(window_of(run.search()))
    assert seen == [(8, None, True, None), (8, None, True, None), (4, "queue", True, None),
                    (4, "queue", True, None), (2, "queue", True, None), (2, "queue", True, None)]
    assert [len(c.texts) for c in mock.calls] == [8, 8, 4, 4, 2, 2]
    # Off (floor 0): no call, engine order, marked.
    out = run.search()
    assert window_of(out) == (0, "queue", False, "brownout")
    assert [h["_id"] for h in out["hits"]["hits"]] == ["0", "1", "2"] and len(mock.calls) == 6
    # The sidecar recovers: a probe after off_probe_s (5 s), then one step up per quiet 5 s.
    mock.queue_ms = 0.0
    run.clock.now += 5
    assert window_of(run.search())[0] == 2
    run.clock.now += 5
    run.search()
    assert window_of(run.search())[0] == 4
    run.clock.now += 5
    run.search()
    assert window_of(run.search()) == (8, None, True, None)


def test_the_smaller_window_is_reordered_and_the_rest_keeps_engine_order(kind):
    mock = MockSidecar(lambda a, q, texts: [float(t.count("fox")) for t in texts], queue_ms=250.0)
    run = Run(kind, mock, config())
    assert [h["_id"] for h in run.search()["hits"]["hits"]] == ["7", "6", "5"]
    run.search()
    out = run.search()  # window 4: the model's favourite among hits 0..3 first, then 4.. in engine order
    assert out["_rescore"]["window"] == 4
    assert [h["_id"] for h in out["hits"]["hits"]] == ["3", "2", "1"]


def test_timeouts_shrink_the_window_and_the_floor_holds(kind):
    mock = MockSidecar.script(Fault(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    run = Run(kind, mock, config(window_floor=2))
    marks = []
    for _ in range(5):
        marks.append(window_of(run.search()))
        run.clock.now += 1
    assert [m[0] for m in marks] == [8, 4, 2, 2, 2]
    assert marks[-1][1] == "timeouts"
    assert all(m[2] is False for m in marks)  # timed out: engine order, `fallback` says so


def test_a_pinned_window_is_honoured_under_load(kind):
    mock = MockSidecar(queue_ms=250.0)
    run = Run(kind, mock, config())
    for advance in (0, 0, 1, 1):
        run.clock.now += advance
        run.search()
    out = run.search(rerank={"window": 6, "adaptive": False})
    assert window_of(out) == (6, "pinned", True, None)
    assert len(mock.calls[-1].texts) == 6
    assert run.search()["_rescore"]["window"] < 6  # the adaptive default still bent


def test_per_target_state_only_the_slow_target_is_pressed(kind):
    def handler(address, query, texts):
        if address.startswith("slow"):
            return Fault(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        return [1.0] * len(texts)

    run = Run(kind, MockSidecar(handler), config(targets=("slow-t:1", "fast-t:1")))
    for _ in range(4):
        run.search()
        run.clock.now += 1
    assert metrics.WINDOW.labels("slow-t:1")._value.get() < 8
    assert metrics.WINDOW.labels("fast-t:1")._value.get() == 8


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.9])
def test_selective_threshold_skips_exactly_the_searches_the_predictor_marks(kind, threshold):
    mock = MockSidecar()
    run = Run(kind, mock, config(selective_threshold=threshold))
    windows = [FLAT, [10.0, 9.9, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0], [20.0, 5.0, 4.0, 1.0, 0.5, 0.4, 0.3, 0.2],
               [9.0, 8.0, 7.0, 1.0, 1.0, 1.0, 1.0, 1.0], [3.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]]
    before = metrics.SKIPPED.labels("confident")._value.get()
    skipped = []
    for scores in windows:
        calls = len(mock.calls)
        out = run.search(scores)
        skipped.append(out["_rescore"]["skipped"] == "confident")
        assert (len(mock.calls) == calls) == skipped[-1]  # a skipped search never reaches the sidecar
        if skipped[-1]:
            assert window_of(out) == (0, None, False, "confident")
    assert skipped == [top_gap(s[:8]) >= threshold for s in windows]
    assert metrics.SKIPPED.labels("confident")._value.get() - before == sum(skipped)


def test_selective_is_off_by_default_and_per_request(kind):
    mock = MockSidecar()
    run = Run(kind, mock, config())
    run.search([10.0, 1.0, 1.0])
    assert len(mock.calls) == 1
    assert run.search([10.0, 1.0, 1.0], rerank={"selective_threshold": 0.5})["_rescore"]["skipped"] == "confident"
    with pytest.raises(ValueError, match="selective_threshold"):
        run.search(rerank={"selective_threshold": -0.1})
    with pytest.raises(ValueError, match="strictly decreasing"):
        run.search(rerank={"window_steps": [2, 4]})


def test_msearch_marks_each_search_with_its_window(kind):
    mock = MockSidecar(queue_ms=250.0)
    run = Run(kind, mock, config())
    searches = [{}, BODY, {}, BODY]
    first = run.msearch(searches)
    assert [r["_rescore"]["window"] for r in first["responses"]] == [8, 8]
    assert [r["_rescore"]["window"] for r in run.msearch(searches)["responses"]] == [4, 4]
    assert [len(c.texts) for c in mock.calls[-2:]] == [4, 4]


def test_one_sick_endpoint_of_a_target_does_not_shrink_it(kind):
    """Like the breaker: while another endpoint of the target is healthy, its timeouts are the pool's
    business (ejection), not a reason to send fewer hits."""
    def handler(address, query, texts):
        if address.startswith("10.0.0.3"):
            return Fault(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        return [1.0] * len(texts)

    mock = MockSidecar(handler)
    run = Run(kind, mock, config(targets=("ipv4:10.0.0.2:1,10.0.0.3:1",)))
    outs = []
    for _ in range(8):
        outs.append(run.search())
        run.clock.now += 1
    assert any(o["_rescore"]["fallback"] == "timeout" for o in outs)  # the sick endpoint was called
    assert {o["_rescore"]["window"] for o in outs} == {8}


def test_the_breaker_is_the_last_resort_it_counts_pressure_only_once_the_window_is_at_its_floor(kind):
    cfg = ConnectorConfig(default=RerankOptions(window=8, window_steps=(4, 2), window_floor=2),
                          sidecar=SidecarClientConfig(targets=("lr:1",), retry=False, budget_ms=250.0,
                                                      breaker=BreakerConfig(window_size=2, minimum_calls=2,
                                                                            open_seconds=60)))
    run = Run(kind, MockSidecar.script(Fault.overloaded()), cfg)
    marks = []
    for _ in range(5):
        marks.append(run.search()["_rescore"])
        run.clock.now += 1
    assert [m["window"] for m in marks] == [8, 4, 2, 2, 2]
    # 8 and 4 could still shrink: their failures were the window's; at the floor (2) two failures open it.
    assert [m["fallback"] for m in marks] == ["overloaded"] * 4 + ["breaker_open"]


def test_without_the_window_the_breaker_counts_at_once(kind):
    cfg = ConnectorConfig(default=RerankOptions(window=8, adaptive=False),
                          sidecar=SidecarClientConfig(targets=("lr2:1",), retry=False,
                                                      breaker=BreakerConfig(window_size=2, minimum_calls=2,
                                                                            open_seconds=60)))
    run = Run(kind, MockSidecar.script(Fault.overloaded()), cfg)
    assert [run.search()["_rescore"]["fallback"] for _ in range(3)] == ["overloaded", "overloaded", "breaker_open"]
