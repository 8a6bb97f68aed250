"""The experiment step without I/O: one engine call, one RerankMany (a call per reranked arm), the
team-draft page; an arm that falls back serves the other's list; deterministic for (seed, hits)."""
from __future__ import annotations

import pytest

from rescore_sidecar.connectors._core.experiment import experiment_steps, impression_of
from rescore_sidecar.connectors._core.interleave import TEAM_A, team_draft
from rescore_sidecar.connectors._core.steps import EngineSearch, RerankMany
from rescore_sidecar.connectors._sidecar.calls import RerankResult
from rescore_sidecar.connectors._sidecar.errors import SidecarUnavailable
from rescore_sidecar.connectors.config import Arm, ConnectorConfig, Experiment, RerankOptions

N = 12
BODY = {"query": {"match": {"text": "fox"}}, "size": 6}
# Arm "model" ranks by the number of "fox" in the text (doc i has i of them: reversed engine order);
# arm "title" by the text's length modulo 5 (a third order).
MODEL = Arm("model", 1, RerankOptions(window=N, fields=("text",)))
TITLE = Arm("title", 1, RerankOptions(window=8, fields=("title",), model="other"))
ENGINE = Arm("engine", 1, None)


def answer(size: int = N) -> dict:
    """The engine's answer: N matching docs, the top `size` of them returned."""
    hits = [{"_index": "i", "_id": f"d{i}", "_score": float(N - i),
             "_source": {"text": f"doc {i}" + " fox" * i, "title": f"t{(i * 7) % N}"}} for i in range(min(size, N))]
    return {"took": 1, "hits": {"total": {"value": N, "relation": "eq"}, "max_score": float(N), "hits": hits}}


def scores_for(call: tuple) -> RerankResult:
    query, texts, model = call
    if model == "other":
        return RerankResult([float(len(t) % 5) for t in texts], "other", 1.0)
    return RerankResult([float(t.count("fox")) for t in texts], "m", 1.0)


def config(*arms: Arm, mode: str = "interleave") -> ConnectorConfig:
    return ConnectorConfig(experiment=Experiment("exp", arms, mode=mode))


def run(cfg: ConnectorConfig, seed: str, results=None, *, body=BODY, ab_key=None) -> tuple[dict, list]:
    """Drives the steps by hand; `results(calls)` answers the sidecar calls (default: all score)."""
    effects = []
    steps = experiment_steps(cfg, body, {}, impression_id=seed, ab_key=ab_key)
    effect = next(steps)
    effects.append(effect)
    value: object = answer(effect.body.get("size", 10))
    try:
        while True:
            effect = steps.send(value)
            effects.append(effect)
            if isinstance(effect, RerankMany):
                value = results(effect.calls) if results else [scores_for(c) for c in effect.calls]
            else:  # one call: answered like a RerankMany of one
                call = (effect.query, effect.texts, effect.model)
                got = results([call]) if results else [scores_for(call)]
                value = got[0] if isinstance(got, list) else got
    except StopIteration as done:
        return done.value, effects


def ids(out: dict) -> list[str]:
    return [h["_id"] for h in out["hits"]["hits"]]


def test_both_arms_rerank_from_one_engine_call_and_one_parallel_sidecar_effect():
    out, effects = run(config(ENGINE, MODEL), "seed-1")
    assert isinstance(effects[0], EngineSearch) and effects[0].body["size"] == N  # the largest window
    assert sum(isinstance(e, EngineSearch) for e in effects) == 1
    assert [type(e).__name__ for e in effects] == ["EngineSearch", "Rerank"]  # the engine-order arm needs no call
    engine_ids = [f"d{i}" for i in range(N)]
    model_ids = [f"d{i}" for i in reversed(range(N))]
    merged = team_draft(engine_ids, model_ids, seed="seed-1")
    assert ids(out) == list(merged.doc_ids[:6])
    teams = [h["_rescore"]["team"] for h in out["hits"]["hits"]]
    assert teams == ["engine" if t == TEAM_A else "model" for t in merged.teams[:6]]
    mark = out["_rescore"]
    assert mark["interleaved"] is True and mark["impression_id"] == "seed-1" and mark["reranked"] is True
    assert mark["arms"] == ["engine", "model"] and mark["fallback"] is None
    assert "_source" in out["hits"]["hits"][0]  # the caller's shape: nothing stripped that was asked for


def test_two_reranked_arms_each_get_their_own_call_with_their_fields():
    out, effects = run(config(MODEL, TITLE), "s")
    (many,) = [e for e in effects if isinstance(e, RerankMany)]
    assert [c[2] for c in many.calls] == ["", "other"]
    assert many.calls[0][1][3] == "doc 3 fox fox fox" and many.calls[1][1][3] == "t9"
    assert len(many.calls[1][1]) == 8  # TITLE's own window
    assert set(h["_rescore"]["team"] for h in out["hits"]["hits"]) <= {"model", "title"}
    # The engine was asked for both arms' text fields; the caller did not ask for `title`... but the
    # default `_source` is the whole document, so nothing is stripped.
    assert effects[0].body["size"] == N


def test_deterministic_for_seed_and_hits_and_seeds_differ():
    cfg = config(ENGINE, MODEL)
    first = [ids(run(cfg, f"seed-{k}")[0]) for k in range(8)]
    again = [ids(run(cfg, f"seed-{k}")[0]) for k in range(8)]
    assert first == again
    assert len({tuple(x) for x in first}) > 1  # the coins depend on the seed


@pytest.mark.parametrize("failing", [0, 1])
def test_one_arm_falls_back_the_other_arms_list_is_served_not_interleaved(failing):
    def results(calls):
        return [SidecarUnavailable("timeout") if i == failing else scores_for(c) for i, c in enumerate(calls)]

    out, _ = run(config(MODEL, TITLE), "s", results)
    kept = ("model", "title")[1 - failing]
    mark = out["_rescore"]
    assert mark["interleaved"] is False and mark["served_arm"] == kept and mark["impression_id"] is None
    assert mark["fallback"] == "timeout" and mark["reranked"] is True
    assert {h["_rescore"]["team"] for h in out["hits"]["hits"]} == {kept}
    if kept == "model":
        assert ids(out) == [f"d{i}" for i in reversed(range(N))][:6]
    assert impression_of(out) is None  # nothing to compare: not recorded


def test_reranked_arm_fails_against_engine_arm_serves_engine_order():
    out, _ = run(config(ENGINE, MODEL), "s", lambda calls: [SidecarUnavailable("breaker_open") for _ in calls])
    assert ids(out) == [f"d{i}" for i in range(6)]
    assert out["_rescore"]["served_arm"] == "engine" and out["_rescore"]["reranked"] is False
    assert out["_rescore"]["fallback"] == "breaker_open"


def test_both_arms_fail_engine_order_marked_fallback():
    out, _ = run(config(MODEL, TITLE), "s", lambda calls: SidecarUnavailable("unavailable"))
    assert ids(out) == [f"d{i}" for i in range(6)]
    assert out["_rescore"]["fallback"] == "unavailable" and out["_rescore"]["served_arm"] is None


def test_impression_of_records_the_page_and_its_teams():
    out, _ = run(config(ENGINE, MODEL), "imp")
    shown = impression_of(out)
    assert shown.id == "imp" and shown.experiment == "exp" and shown.arms == ("engine", "model")
    assert list(shown.doc_ids) == ids(out)
    assert shown.teams == {h["_id"]: h["_rescore"]["team"] for h in out["hits"]["hits"]}


def test_unrankable_search_is_sent_unchanged_without_impression():
    body = {"query": {"match": {"text": "fox"}}, "sort": [{"n": "asc"}]}
    out, effects = run(config(ENGINE, MODEL), "s", body=body)
    assert effects[0].body == body and len(effects) == 1
    assert impression_of(out) is None


def test_split_mode_one_arm_by_key_and_teams_of_that_arm():
    cfg = config(ENGINE, MODEL, mode="split")
    seen = {}
    for key in ("u1", "u2", "u3", "u4", "u5", "u6"):
        out, effects = run(cfg, f"imp-{key}", ab_key=key)
        arm = out["_rescore"]["served_arm"]
        seen[arm] = ids(out)
        assert {h["_rescore"]["team"] for h in out["hits"]["hits"]} == {arm}
        assert any(isinstance(e, RerankMany) or type(e).__name__ == "Rerank" for e in effects) == (arm == "model")
        shown = impression_of(out)
        assert shown.arm == arm and shown.teams is None and shown.id == f"imp-{key}"
        again, _ = run(cfg, "other-id", ab_key=key)
        assert again["_rescore"]["served_arm"] == arm  # the user's arm is fixed by the key
    assert set(seen) == {"engine", "model"}
    assert seen["engine"] == [f"d{i}" for i in range(6)]
    assert seen["model"] == [f"d{i}" for i in reversed(range(N))][:6]


def test_experiment_config_is_checked():
    with pytest.raises(ValueError, match="two arms"):
        Experiment("e", (ENGINE,))
    with pytest.raises(ValueError, match="distinct"):
        Experiment("e", (MODEL, MODEL))
    with pytest.raises(ValueError, match="at least one arm"):
        Experiment("e", (ENGINE, Arm("e2", 1, None)))
    with pytest.raises(ValueError, match="mode"):
        Experiment("e", (ENGINE, MODEL), mode="ab")
