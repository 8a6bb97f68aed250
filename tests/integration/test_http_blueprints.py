"""Contract tests for the engine blueprints in docs/http-api.md (no engine: see the doc for why).

The JSON blocks are read from the doc itself, their request templates filled the way the engines
fill them and sent to a real sidecar, and its real answers read back through the documented
JSON paths (Elasticsearch `custom` service) and OpenSearch's `cohere.rerank` post-processing.
"""
from __future__ import annotations

import json
import pathlib
import re

import grpc
import httpx
import pytest
from jsonpath_ng import parse as jsonpath

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from rescore_sidecar.tools.sidecar_process import sidecar_process

pytestmark = pytest.mark.integration

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "http-api.md"
TOKEN = "blueprint-token"
QUERY = 'supersonic "delta" wing — Überschall'
DOCS = ["laminar boundary layer on a flat plate", "shock wave drag of a slender body at supersonic speed",
        'a "quoted" title\nwith a newline', "buckling of cylindrical panels", "wing pressure distribution",
        "hypersonic viscous flow", "Düsenentwurf (nozzle design)", "lift of a delta wing at supersonic speed"]


def blueprint(first_line: str) -> dict:
    """The JSON body of the ```json block in the doc whose first line starts with `first_line`."""
    for block in re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S):
        head, _, body = block.partition("\n")
        if head.startswith(first_line):
            return json.loads(body)
    raise AssertionError(f"no blueprint starting {first_line!r} in {DOC}")


@pytest.fixture(scope="module")
def sidecar(tiny_cross_encoder):
    with sidecar_process({"ce": tiny_cross_encoder}, http_port=0, extra_args=["--auth-token", TOKEN]) as proc:
        yield proc


@pytest.fixture(scope="module")
def grpc_scores(sidecar) -> list[float]:
    """Normalized gRPC score of each document, by index."""
    with grpc.insecure_channel(sidecar.address) as channel:
        reply = rescore_pb2_grpc.RerankerStub(channel).Rerank(
            pb.RerankRequest(query=QUERY, documents=[pb.Document(text=t) for t in DOCS]),
            metadata=[("authorization", f"Bearer {TOKEN}")], timeout=30)
    by_index = {r.index: r.score for r in reply.results}
    return [by_index[i] for i in range(len(DOCS))]


def local_url(url: str, sidecar) -> str:
    return re.sub(r"^https?://[^/]+", sidecar.http_url, url)


def test_elasticsearch_custom_service(sidecar, grpc_scores):
    settings = blueprint("PUT _inference/rerank/")["service_settings"]
    secrets = {"api_key": TOKEN}
    headers = {k: re.sub(r"\$\{(\w+)\}", lambda m: secrets[m.group(1)], v) for k, v in settings["headers"].items()}
    # Elasticsearch substitutes ${query} and ${input} as JSON values (a string, an array of strings).
    body = settings["request"].replace("${query}", json.dumps(QUERY)).replace("${input}", json.dumps(DOCS))
    reply = httpx.post(local_url(settings["url"], sidecar), content=body.encode(), headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    answer = reply.json()

    parser = settings["response"]["json_parser"]
    scores = [m.value for m in jsonpath(parser["relevance_score"]).find(answer)]
    indices = [m.value for m in jsonpath(parser["reranked_index"]).find(answer)]
    assert len(scores) == len(indices) == len(DOCS)
    assert sorted(indices) == list(range(len(DOCS)))  # every document scored exactly once
    assert all(isinstance(s, float) for s in scores) and all(isinstance(i, int) for i in indices)
    assert scores == sorted(scores, reverse=True)
    assert [scores[indices.index(i)] for i in range(len(DOCS))] == pytest.approx(grpc_scores, abs=1e-6)


def test_elasticsearch_blueprint_without_token_is_refused(sidecar):
    settings = blueprint("PUT _inference/rerank/")["service_settings"]
    body = settings["request"].replace("${query}", json.dumps(QUERY)).replace("${input}", json.dumps(DOCS))
    reply = httpx.post(local_url(settings["url"], sidecar), content=body.encode(),
                       headers={"Content-Type": "application/json"}, timeout=30)
    assert reply.status_code == 401


def cohere_rerank_post_process(results: list[dict]) -> list[float]:
    """OpenSearch ML Commons' CohereRerankPostProcessFunction: scores[index] = relevance_score,
    in an array as long as `results` (ml-commons, connector/functions/postprocess)."""
    scores: list[float | None] = [None] * len(results)
    for result in results:
        if "index" not in result or "relevance_score" not in result:
            raise ValueError("The rerank result should contain index and relevance_score.")
        scores[result["index"]] = result["relevance_score"]  # IndexError here = an engine-side failure
    return scores


def test_opensearch_cohere_connector(sidecar, grpc_scores):
    connector = blueprint("POST /_plugins/_ml/connectors/_create")
    action = connector["actions"][0]
    assert action["pre_process_function"] == "connector.pre_process.cohere.rerank"
    assert action["post_process_function"] == "connector.post_process.cohere.rerank"
    # connector.pre_process.cohere.rerank: parameters query, documents and top_n = len(documents);
    # ${parameters.query} sits inside quotes in the template, so it is the escaped string.
    params = {"documents": json.dumps(DOCS), "query": json.dumps(QUERY)[1:-1], "top_n": str(len(DOCS))}
    body = re.sub(r"\$\{parameters\.(\w+)\}", lambda m: params[m.group(1)], action["request_body"])
    creds = {name: TOKEN for name in connector["credential"]}
    headers = {k: re.sub(r"\$\{credential\.(\w+)\}", lambda m: creds[m.group(1)], v)
               for k, v in action["headers"].items()}
    reply = httpx.post(local_url(action["url"], sidecar), content=body.encode(), headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    scores = cohere_rerank_post_process(reply.json()["results"])
    assert len(scores) == len(DOCS) and None not in scores
    assert all(isinstance(s, float) for s in scores)  # the post-processor casts to Double
    assert scores == pytest.approx(grpc_scores, abs=1e-6)


def test_opensearch_trusted_endpoint_pattern_matches_the_connector_url():
    settings = blueprint("PUT _cluster/settings")["persistent"]
    url = blueprint("POST /_plugins/_ml/connectors/_create")["actions"][0]["url"]
    assert settings["plugins.ml_commons.connector.private_ip_enabled"] is True
    assert any(re.match(pattern, url) for pattern in settings["plugins.ml_commons.trusted_connector_endpoints_regex"])

