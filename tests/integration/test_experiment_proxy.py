"""An interleaved experiment through the proxy (`rescore-sidecar proxy` subprocess) in front of a real
OpenSearch node and a real sidecar: the merged page and its impression header, POST
/_rescore/feedback into the event log and through `rescore-sidecar ab report --json`, and bad
feedback answered with a 4xx that says why, writing nothing."""
from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from rescore_sidecar.tools.proxy_process import proxy_process
from rescore_sidecar.tools.sidecar_process import sidecar_process
from rescore_sidecar.tools.waiting import wait_until

INDEX = "experiment-proxy-corpus"
WORDS = "apple banana cherry river mountain engine cloud stone paper glass".split()
BODY = {"query": {"match": {"body": "common"}}, "size": 10}
EXPERIMENT = {"name": "exp", "mode": "interleave",
              "arms": [{"name": "engine", "options": None}, {"name": "model", "options": {"window": 20}}]}


def _doc(i: int) -> dict:
    words = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 4 + i % 5))
    return {"title": f"doc {i}", "body": f"{'common ' * (1 + i % 7)}{words}"}


@pytest.fixture(scope="module")
def sidecar(tiny_cross_encoder):
    with sidecar_process({"tiny": tiny_cross_encoder}) as proc:
        yield proc


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    return tmp_path_factory.mktemp("experiment") / "events.jsonl"


@pytest.fixture(scope="module")
def proxy(opensearch_node, sidecar, events):
    client = opensearch_node.client()
    if not client.indices.exists(index=INDEX):
        ops = []
        for i in range(30):
            ops += [{"index": {"_index": INDEX, "_id": f"d{i}"}}, _doc(i)]
        client.bulk(body=ops, refresh=True)
    with proxy_process(opensearch_node.url, "--sidecar", sidecar.address, "--budget-ms", "5000",
                       "--rescore", json.dumps({"fields": ["title", "body"]}),
                       "--experiment", json.dumps(EXPERIMENT), "--experiment-events", str(events)) as proc:
        yield proc


def _logged(path, count: int) -> list[dict]:
    """The log once it holds `count` events (the writer thread appends in the background)."""
    wait_until(lambda: path.exists() and len(path.read_text().splitlines()) >= count, timeout=10,
               what=f"{count} events in {path}")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_interleaved_search_feedback_and_report_through_the_proxy(opensearch_node, proxy, events):
    with httpx.Client(base_url=proxy.url, timeout=30) as http:
        engine_ids = [h["_id"] for h in httpx.post(f"{opensearch_node.url}/{INDEX}/_search",
                                                   json={**BODY, "size": 20}).json()["hits"]["hits"]]
        answer = http.post(f"/{INDEX}/_search", json=BODY)
        assert answer.status_code == 200, answer.text
        out = answer.json()
        mark = out["_rescore"]
        assert mark["interleaved"] is True and mark["experiment"] == "exp"
        assert answer.headers["x-rescore-impression"] == mark["impression_id"]
        hits = out["hits"]["hits"]
        assert len(hits) == 10 and {h["_id"] for h in hits} <= set(engine_ids)
        assert {h["_rescore"]["team"] for h in hits} <= {"engine", "model"}
        impression = mark["impression_id"]
        model_doc = next(h["_id"] for h in hits if h["_rescore"]["team"] == "model")

        # A toggle opts a search out of the experiment: the plain reranked search, no impression.
        toggled = http.post(f"/{INDEX}/_search", json=BODY, headers={"X-Rescore": "on"}).json()["_rescore"]
        assert "impression_id" not in toggled and toggled["reranked"] is True

        ok = http.post("/_rescore/feedback", json={"impression_id": impression, "clicked": [model_doc]})
        assert ok.status_code == 200 and ok.json() == {"impression_id": impression, "accepted": [model_doc],
                                                       "duplicate": []}
        assert _logged(events, 2)[1]["clicked"] == [model_doc]

        bad = [
            (b'{"impression_id": ', 400, "malformed_json"),
            (b'["not", "an", "object"]', 400, "bad_feedback"),
            (json.dumps({"impression_id": impression, "clicked": []}).encode(), 400, "bad_feedback"),
            (json.dumps({"impression_id": impression, "clicked": [model_doc], "x": 1}).encode(), 400, "bad_feedback"),
            (json.dumps({"impression_id": "nope", "clicked": [model_doc]}).encode(), 404, "unknown_impression"),
            (json.dumps({"impression_id": impression, "clicked": ["d999"]}).encode(), 422, "doc_not_in_impression"),
        ]
        for body, status, kind in bad:
            got = http.post("/_rescore/feedback", content=body, headers={"Content-Type": "application/json"})
            assert got.status_code == status, (body, got.text)
            assert got.json()["error"]["type"] == kind and got.json()["error"]["reason"]
        assert http.get("/_rescore/feedback").status_code == 405
        again = http.post("/_rescore/feedback", json={"impression_id": impression, "clicked": [model_doc]})
        assert again.json()["duplicate"] == [model_doc] and again.json()["accepted"] == []  # idempotent

        # A second impression and click: the log is written in order, so once it is there, nothing
        # from the bad feedback (or the duplicate) came before it.
        second = http.post(f"/{INDEX}/_search", json=BODY).json()
        engine_doc = next(h["_id"] for h in second["hits"]["hits"] if h["_rescore"]["team"] == "engine")
        assert http.post("/_rescore/feedback", json={"impression_id": second["_rescore"]["impression_id"],
                                                     "clicked": [engine_doc]}).status_code == 200
    logged = _logged(events, 4)
    assert [e["type"] for e in logged] == ["impression", "feedback", "impression", "feedback"]
    assert logged[0]["teams"] == {h["_id"]: h["_rescore"]["team"] for h in hits}

    done = subprocess.run([sys.executable, "-m", "rescore_sidecar.tools", "ab", "report", "--json", str(events)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (report,) = json.loads(done.stdout)
    assert report["experiment"] == "exp"
    assert report["interleave"]["impressions"] == 2 and report["interleave"]["clicked"] == 2
    assert report["interleave"]["wins"] == {"engine": 1, "model": 1}
