"""Interleaved and split experiments through the sync and async wrappers, against a real OpenSearch
node and a real sidecar (tiny model): the merged page, feedback into the event log, the log read
back by `rescore-sidecar ab report --json`, and an arm that falls back serving the other's list.
One test runs the interleaved search, feedback and the index sink against Elasticsearch too."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from rescore_sidecar.connectors import (Arm, AsyncRescoringElasticsearch, AsyncRescoringOpenSearch, ConnectorConfig,
                                        Experiment, FeedbackError, RerankOptions, RescoringElasticsearch,
                                        RescoringOpenSearch, SidecarClientConfig)
from rescore_sidecar.tools.sidecar_process import sidecar_process

INDEX = "experiment-corpus"
WORDS = "apple banana cherry river mountain engine cloud stone paper glass".split()
BODY = {"query": {"match": {"body": "common"}}, "size": 10}
MODEL = RerankOptions(window=20, fields=("title", "body"))


def _doc(i: int) -> dict:
    words = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 4 + i % 5))
    return {"title": f"doc {i}", "body": f"{'common ' * (1 + i % 7)}{words}"}


@pytest.fixture(scope="module")
def sidecar(tiny_cross_encoder):
    with sidecar_process({"tiny": tiny_cross_encoder}) as proc:
        yield proc


@pytest.fixture(scope="module")
def node(opensearch_node):
    client = opensearch_node.client()
    if not client.indices.exists(index=INDEX):
        ops = []
        for i in range(30):
            ops += [{"index": {"_index": INDEX, "_id": f"d{i}"}}, _doc(i)]
        client.bulk(body=ops, refresh=True)
    return opensearch_node


def _config(sidecar, events, *, mode="interleave", arms=None) -> ConnectorConfig:
    arms = arms or (Arm("engine", 1, None), Arm("model", 1, MODEL))
    return ConnectorConfig(default=MODEL, experiment=Experiment("exp", arms, mode=mode, events=str(events)),
                           sidecar=SidecarClientConfig(targets=(sidecar.address,), budget_ms=5000))


def _events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _report(path) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "rescore_sidecar.tools", "ab", "report", "--json", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _check_interleaved(out: dict, engine_ids: list[str]) -> None:
    mark = out["_rescore"]
    assert mark["interleaved"] is True and mark["fallback"] is None and mark["experiment"] == "exp", mark
    hits = out["hits"]["hits"]
    assert len(hits) == 10 and len({h["_id"] for h in hits}) == 10
    assert {h["_id"] for h in hits} <= set(engine_ids)  # every hit from the same engine answer
    assert {h["_rescore"]["team"] for h in hits} <= {"engine", "model"}
    # Team-draft: every prefix has as many docs from each arm, give or take one.
    for k in range(1, 11):
        teams = [h["_rescore"]["team"] for h in hits[:k]]
        assert abs(teams.count("engine") - teams.count("model")) <= 1
    # The engine arm's docs come in the engine's order.
    engine_team = [h["_id"] for h in hits if h["_rescore"]["team"] == "engine"]
    assert engine_team == sorted(engine_team, key=engine_ids.index)


def test_sync_and_async_interleaved_search_feedback_and_report(node, sidecar, tmp_path):
    events = tmp_path / "events.jsonl"
    engine_ids = [h["_id"] for h in node.client().search(index=INDEX, body={**BODY, "size": 20})["hits"]["hits"]]
    client = RescoringOpenSearch(node.client(), _config(sidecar, events))
    out = client.search(index=INDEX, body=BODY)
    _check_interleaved(out, engine_ids)
    impression = out["_rescore"]["impression_id"]
    shown = [h["_id"] for h in out["hits"]["hits"]]
    model_team = [h["_id"] for h in out["hits"]["hits"] if h["_rescore"]["team"] == "model"]

    # Replayable: the same impression id over the same hits gives the same page.
    def engine(b, p):
        return node.client().search(index=INDEX, body=b, params=p)
    again = [client.rescorer.search(engine, BODY, impression_id="replay")["hits"]["hits"] for _ in range(2)]
    assert [h["_id"] for h in again[0]] == [h["_id"] for h in again[1]]

    got = client.feedback(impression, clicked=[model_team[0]])
    assert got.accepted == (model_team[0],)
    assert client.feedback(impression, clicked=[model_team[0]]).duplicate == (model_team[0],)  # idempotent
    with pytest.raises(FeedbackError) as bad:
        client.feedback(impression, clicked=["not-shown"])
    assert bad.value.reason == "doc_not_in_impression"
    with pytest.raises(FeedbackError) as bad:
        client.feedback("no-such-impression", clicked=[shown[0]])
    assert bad.value.reason == "unknown_impression"

    async def run_async() -> dict:
        async with AsyncRescoringOpenSearch(node.async_client(), _config(sidecar, tmp_path / "async.jsonl")) as aclient:
            aout = await aclient.search(index=INDEX, body=BODY)
            _check_interleaved(aout, engine_ids)
            engine_team = [h["_id"] for h in aout["hits"]["hits"] if h["_rescore"]["team"] == "engine"]
            result = await aclient.feedback(aout["_rescore"]["impression_id"], clicked=engine_team[:2])
            assert result.accepted == tuple(engine_team[:2])
            return aout

    aout = asyncio.run(run_async())
    client.close()  # flushes the log

    logged = _events(events)
    # The search and the first replay (a second impression under one id is refused), one new click.
    assert [e["type"] for e in logged] == ["impression"] * 2 + ["feedback"]
    first = logged[0]
    assert first["id"] == impression and first["doc_ids"] == shown and first["mode"] == "interleave"
    assert first["teams"] == {h["_id"]: h["_rescore"]["team"] for h in out["hits"]["hits"]}
    (report,) = _report(events)
    assert report["interleave"]["impressions"] == 2 and report["interleave"]["clicked"] == 1
    assert report["interleave"]["wins"] == {"engine": 0, "model": 1}
    (areport,) = _report(tmp_path / "async.jsonl")
    assert areport["interleave"]["wins"]["engine"] == 1 and aout["_rescore"]["impression_id"]


def test_an_arm_that_falls_back_serves_the_other_arms_list(node, sidecar, tmp_path):
    events = tmp_path / "events.jsonl"
    broken = Arm("broken", 1, RerankOptions(window=20, fields=("title", "body"), model="no-such-model"))
    client = RescoringOpenSearch(node.client(), _config(sidecar, events, arms=(Arm("model", 1, MODEL), broken)))
    plain = RescoringOpenSearch(node.client(), ConnectorConfig(default=MODEL, sidecar=SidecarClientConfig(
        targets=(sidecar.address,), budget_ms=5000)))
    out = client.search(index=INDEX, body=BODY)
    alone = plain.search(index=INDEX, body=BODY)
    mark = out["_rescore"]
    assert mark["interleaved"] is False and mark["served_arm"] == "model" and mark["fallback"], mark
    assert mark["impression_id"] is None and mark["reranked"] is True
    assert [h["_id"] for h in out["hits"]["hits"]] == [h["_id"] for h in alone["hits"]["hits"]]
    assert {h["_rescore"]["team"] for h in out["hits"]["hits"]} == {"model"}
    client.close()
    plain.close()
    assert _events(events) == []  # nothing compared, nothing recorded


def test_split_experiment_feedback_counts_per_arm(node, sidecar, tmp_path):
    events = tmp_path / "events.jsonl"
    client = RescoringOpenSearch(node.client(), _config(sidecar, events, mode="split"))
    arms = set()
    for user in ("u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"):
        out = client.search(index=INDEX, body=BODY, ab_key=user)
        arm = out["_rescore"]["served_arm"]
        arms.add(arm)
        assert {h["_rescore"]["team"] for h in out["hits"]["hits"]} == {arm}
        client.feedback(out["_rescore"]["impression_id"], clicked=[out["hits"]["hits"][0]["_id"]])
    client.close()
    assert arms == {"engine", "model"}
    (report,) = _report(events)
    split = {a["arm"]: a for a in report["split"]}
    assert set(split) == {"engine", "model"}
    assert sum(a["impressions"] for a in split.values()) == 8
    assert all(a["ctr"] == 1.0 and a["mrr_of_clicks"] == 1.0 for a in split.values())


def test_events_into_an_engine_index(node, sidecar):
    """events="http://host:port/INDEX": impressions and feedback become documents of that index (_bulk)."""
    index = "ab-events-test"
    client = RescoringOpenSearch(node.client(), _config(sidecar, f"{node.url}/{index}"))
    out = client.search(index=INDEX, body=BODY)
    client.feedback(out["_rescore"]["impression_id"], clicked=[out["hits"]["hits"][0]["_id"]])
    client.close()  # writes what is queued
    engine = node.client()
    engine.indices.refresh(index=index)
    docs = [h["_source"] for h in engine.search(index=index, body={"query": {"term": {
        "experiment.keyword": "exp"}}, "size": 10})["hits"]["hits"]]
    assert sorted(d["type"] for d in docs) == ["feedback", "impression"]
    assert {d.get("id") or d.get("impression_id") for d in docs} == {out["_rescore"]["impression_id"]}
    assert client.rescorer.feedback_log.write_errors == 0


def test_elasticsearch_interleaved_search_feedback_and_index_sink(elasticsearch_node, sidecar):
    """The same experiment over elasticsearch-py (sync and async), its events indexed into Elasticsearch."""
    engine = elasticsearch_node.client()
    if not engine.indices.exists(index=INDEX):
        ops = []
        for i in range(30):
            ops += [{"index": {"_index": INDEX, "_id": f"d{i}"}}, _doc(i)]
        engine.bulk(operations=ops, refresh=True)
    engine_ids = [h["_id"] for h in engine.search(index=INDEX, query=BODY["query"], size=20)["hits"]["hits"]]
    index = "ab-events-es"
    config = _config(sidecar, f"{elasticsearch_node.url}/{index}")
    client = RescoringElasticsearch(elasticsearch_node.client(), config)
    out = client.search(index=INDEX, body=BODY)
    _check_interleaved(out, engine_ids)
    impression = out["_rescore"]["impression_id"]
    model_team = [h["_id"] for h in out["hits"]["hits"] if h["_rescore"]["team"] == "model"]
    assert client.feedback(impression, clicked=model_team[:1]).accepted == tuple(model_team[:1])

    async def run_async() -> str:
        async with AsyncRescoringElasticsearch(elasticsearch_node.async_client(), config) as aclient:
            aout = await aclient.search(index=INDEX, body=BODY)
            _check_interleaved(aout, engine_ids)
            return aout["_rescore"]["impression_id"]

    async_impression = asyncio.run(run_async())
    client.close()  # writes what is queued
    assert client.rescorer.feedback_log.write_errors == 0
    engine.indices.refresh(index=index)
    docs = [h["_source"] for h in engine.search(index=index, query={"term": {"experiment.keyword": "exp"}},
                                                   size=10)["hits"]["hits"]]
    assert sorted(d["type"] for d in docs) == ["feedback", "impression", "impression"]
    assert {d.get("id") or d.get("impression_id") for d in docs} == {impression, async_impression}
