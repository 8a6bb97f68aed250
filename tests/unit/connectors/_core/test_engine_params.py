"""The engine clients' keywords as a search body and URL parameters, and back."""
from __future__ import annotations

from rescore_sidecar.connectors._core.engine_params import es_kwargs, es_split, os_params


def test_opensearch_keywords_are_url_params_as_opensearch_py_escapes_them():
    assert os_params({"routing": "r"}, {"from_": 3, "explain": True, "stored_fields": ["a", "b"]}) == {
        "routing": "r", "from": 3, "explain": "true", "stored_fields": "a,b"}


def test_elasticsearch_keywords_split_into_body_and_params_and_back():
    index, body, params, _ = es_split({"index": "docs", "body": {"track_total_hits": False},
                                       "query": {"match_all": {}}, "from_": 5, "source": False,
                                       "source_includes": ["t"], "request_cache": True})
    assert index == "docs"
    assert body == {"track_total_hits": False, "query": {"match_all": {}}, "from": 5, "_source": False}
    assert params == {"_source_includes": ["t"], "request_cache": True}
    assert es_kwargs(params) == {"source_includes": ["t"], "request_cache": True}
