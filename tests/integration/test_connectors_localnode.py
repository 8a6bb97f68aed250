"""The local engine launcher: real nodes answer, and failures say what went wrong."""
from __future__ import annotations

import pytest

from rescore_sidecar.tools import localnode


def test_node_is_healthy_and_indexes(engine_node):
    assert engine_node.health()["status"] in ("green", "yellow")
    client = engine_node.client()
    index = "localnode-smoke"
    if engine_node.engine == "opensearch":
        client.index(index=index, id="1", body={"t": "hello world"}, refresh=True)
        hits = client.search(index=index, body={"query": {"match": {"t": "hello"}}})["hits"]["hits"]
    else:
        client.index(index=index, id="1", document={"t": "hello world"}, refresh=True)
        hits = client.search(index=index, query={"match": {"t": "hello"}})["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["1"]


def test_engine_started_once_per_session(engine_pool, engine_node):
    assert engine_pool.get(engine_node.engine) is engine_node


def test_failed_download_names_the_url(tmp_path, monkeypatch):
    monkeypatch.setenv("RESCORE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("RESCORE_MAVEN_URL", "http://127.0.0.1:9/maven2")
    with pytest.raises(localnode.EngineError, match=r"127\.0\.0\.1:9/maven2/org/opensearch/.*opensearch-2\.19\.6\.zip"):
        localnode.install("opensearch", "2")
    assert not list(tmp_path.glob("engines/*.zip")) and not list(tmp_path.glob("engines/.*.part"))


def test_bad_inputs_are_clear_errors():
    with pytest.raises(localnode.EngineError, match="unknown engine"):
        localnode.resolve_version("solr")
    with pytest.raises(localnode.EngineError, match="bad opensearch version"):
        localnode.resolve_version("opensearch", "latest")


def test_failed_start_names_java_and_log_tail(monkeypatch):
    # A heap the JVM refuses: the launcher fails fast, the error carries Java + log.
    with pytest.raises(localnode.EngineError, match=r"(?s)Java \d+ at .*log tail:.*[Hh]eap"):
        localnode.start_node("opensearch", heap="1k", timeout=60)


def test_opensearch_node_has_the_standard_modules(opensearch_node):
    # The integ-test zip has only transport-netty4; a real distribution's modules are added.
    client = opensearch_node.client()
    (info,) = client.nodes.info(metric="plugins")["nodes"].values()
    loaded = {m["name"] for m in info["modules"]}
    assert set(localnode.standard_modules("opensearch")) <= loaded, loaded

    index = "localnode-modules"
    client.indices.create(index=index, body={"mappings": {"properties": {
        "t": {"type": "text"},
        "price": {"type": "scaled_float", "scaling_factor": 100},       # mapper-extras
        "rel": {"type": "join", "relations": {"question": "answer"}},  # parent-join
    }}})
    client.index(index=index, id="1", body={"t": "hello world", "price": 2.5, "rel": "question"}, refresh=True)
    # lang-painless: a script score reads the scaled_float doc value
    hits = client.search(index=index, body={"query": {"script_score": {
        "query": {"match_all": {}}, "script": {"source": "doc['price'].value * 2"}}}})["hits"]["hits"]
    assert [h["_score"] for h in hits] == [5.0]
    # analysis-common: the reverse filter
    tokens = client.indices.analyze(body={"tokenizer": "whitespace", "filter": ["reverse"], "text": "abc"})
    assert [t["token"] for t in tokens["tokens"]] == ["cba"]
    # reindex, with a painless script on the way
    done = client.reindex(body={"source": {"index": index}, "dest": {"index": index + "-copy"},
                                "script": {"source": "ctx._source.price += 1"}}, refresh=True)
    assert done["created"] == 1
    assert client.get(index=index + "-copy", id="1")["_source"]["price"] == 3.5
