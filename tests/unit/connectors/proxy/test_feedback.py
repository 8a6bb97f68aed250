"""The proxy's experiment and `POST /_rescore/feedback` over a scripted engine and sidecar (the
fixtures of test_search.py): teams and the impression header, clicks logged once, bad feedback a
4xx that writes nothing, a failing arm served from the other without an impression."""
from __future__ import annotations

import json
import pathlib

import pytest

from rescore_sidecar.connectors.proxy.app import stop
from rescore_sidecar.connectors.testing import Fault, MockSidecar
from tests.unit.connectors.proxy.test_search import QUERY, _start, by_number, client, engine  # noqa: F401

EXPERIMENT = {"name": "exp", "arms": [{"name": "engine", "options": None}, {"name": "model", "options": {}}]}


@pytest.fixture
async def setup(engine, tmp_path):  # noqa: F811 - the fixture imported above
    mock = MockSidecar(by_number)
    events = tmp_path / "events.jsonl"
    runner, state, url = await _start(engine, mock, experiment=EXPERIMENT, experiment_events=str(events))
    yield url, state, mock
    await stop(runner, state)


def _lines(state) -> list[dict]:
    state.rescorer.feedback_log.close()  # writes what is queued
    events = pathlib.Path(state.rescorer.config.experiment.events)
    return [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []


async def test_interleaved_search_then_feedback_once_per_click(setup, client):  # noqa: F811
    url, state, _ = setup
    async with client.post(url + "/i/_search", json=QUERY) as r:
        assert r.status == 200 and r.headers["X-Rescore"] == "reranked"
        body = await r.json()
        impression = r.headers["X-Rescore-Impression"]
    assert body["_rescore"]["impression_id"] == impression and body["_rescore"]["interleaved"] is True
    teams = {h["_id"]: h["_rescore"]["team"] for h in body["hits"]["hits"]}
    assert len(teams) == 3 and set(teams.values()) == {"engine", "model"}
    doc = next(iter(teams))
    for expected in ({"accepted": [doc], "duplicate": []}, {"accepted": [], "duplicate": [doc]}):
        async with client.post(url + "/_rescore/feedback", json={"impression_id": impression, "clicked": [doc]}) as r:
            assert r.status == 200 and await r.json() == {"impression_id": impression, **expected}
    bad = [(b"{", 400, "malformed_json"), (b"[]", 400, "bad_feedback"),
           (json.dumps({"impression_id": impression}).encode(), 400, "bad_feedback"),
           (json.dumps({"impression_id": "x", "clicked": [doc]}).encode(), 404, "unknown_impression"),
           (json.dumps({"impression_id": impression, "clicked": ["zz"]}).encode(), 422, "doc_not_in_impression")]
    for data, status, kind in bad:
        async with client.post(url + "/_rescore/feedback", data=data) as r:
            assert r.status == status and (await r.json())["error"]["type"] == kind
    events = _lines(state)
    assert [e["type"] for e in events] == ["impression", "feedback"]
    assert events[0]["teams"] == teams and events[1]["clicked"] == [doc]


async def test_a_failing_arm_serves_the_other_without_impression(setup, client):  # noqa: F811
    url, state, mock = setup
    mock.handler = lambda address, query, texts: Fault.unavailable()
    async with client.post(url + "/i/_search", json=QUERY) as r:
        body = await r.json()
        assert "X-Rescore-Impression" not in r.headers and r.headers["X-Rescore"] == "fallback"
    assert [h["_id"] for h in body["hits"]["hits"]] == ["0", "1", "2"]  # the engine arm's list
    assert body["_rescore"]["served_arm"] == "engine" and body["_rescore"]["interleaved"] is False
    assert _lines(state) == []

