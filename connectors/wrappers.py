"""Drop-in wrappers of opensearch-py / elasticsearch-py clients (sync). Mirrored by `wrappers_async`
(same request mapping, shared; only the calls differ).

`search` and `msearch` gain two keywords, `rerank=` (None, bool, dict of `RerankOptions`
overrides) and `ab_key=` (user/session id for A/B arms); every other attribute is the wrapped
client's own, and responses are the client's own types with a top-level `_rescore` entry.
"""
from __future__ import annotations

from typing import Any

from rescore_sidecar.connectors.config import ConnectorConfig
from rescore_sidecar.connectors.rescoring import Rescorer

# elasticsearch-py keyword -> body key, for the keywords that travel in the request body.
ES_BODY_FIELDS = {
    "aggregations", "aggs", "collapse", "docvalue_fields", "explain", "ext", "fields", "from_", "highlight",
    "indices_boost", "knn", "min_score", "pit", "post_filter", "profile", "query", "rank", "rescore", "retriever",
    "runtime_mappings", "script_fields", "search_after", "seq_no_primary_term", "size", "slice", "sort", "source",
    "stats", "stored_fields", "suggest", "terminate_after", "timeout", "track_scores", "track_total_hits", "version",
}
_ES_BODY_RENAME = {"from_": "from", "source": "_source"}
# elasticsearch-py keyword <-> URL parameter, where they differ.
_ES_PARAM_RENAME = {"source_includes": "_source_includes", "source_excludes": "_source_excludes",
                    "from_": "from"}
_ES_PARAM_BACK = {v: k for k, v in _ES_PARAM_RENAME.items()}


def os_params(params: Mapping | None, kwargs: Mapping) -> dict:
    """opensearch-py keyword params as URL params (its own `_escape`: bools as true/false, lists joined)."""
    out = dict(params or {})
    for key, value in kwargs.items():
        key = "from" if key == "from_" else key
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        out[key] = value
    return out


def es_split(kwargs: Mapping) -> tuple[Any, dict, dict, dict]:
    """elasticsearch-py keywords -> (index, body, URL params, other keywords such as headers)."""
    kwargs = dict(kwargs)
    index = kwargs.pop("index", None)
    body = dict(kwargs.pop("body", None) or {})
    params: dict = {}
    for key, value in kwargs.items():
        if key in ES_BODY_FIELDS or key in ("_source", "from"):
            body[_ES_BODY_RENAME.get(key, key)] = value
        else:
            params[_ES_PARAM_RENAME.get(key, key)] = value
    return index, body, params, {}


def es_kwargs(params: Mapping) -> dict:
    return {_ES_PARAM_BACK.get(k, k): v for k, v in params.items()}


class _Wrapper:
    def __init__(self, client: Any, config: ConnectorConfig = ConnectorConfig(), *, rescorer: Any = None):
        self.client = client
        self.rescorer = rescorer or Rescorer(config)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def close(self) -> None:
        """Closes the sidecar channels and the wrapped client."""
        self.rescorer.close()
        self.client.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RescoringOpenSearch(_Wrapper):
    """Wraps an `opensearchpy.OpenSearch`: `search`/`msearch` rerank, all else passes through."""

    def search(self, *, body: Any = None, index: Any = None, params: Any = None, headers: Any = None,
               rerank: Any = None, ab_key: str | None = None, **kwargs: Any) -> Any:
        def engine(b: dict, p: dict) -> Any:
            return self.client.search(body=b, index=index, params=p, headers=headers)

        return self.rescorer.search(engine, body, os_params(params, kwargs), rerank=rerank, ab_key=ab_key)

    def msearch(self, *, body: Any, index: Any = None, params: Any = None, headers: Any = None,
                rerank: Any = None, ab_key: str | None = None, **kwargs: Any) -> Any:
        def engine(lines: list, p: dict) -> Any:
            return self.client.msearch(body=lines, index=index, params=p, headers=headers)

        return self.rescorer.msearch(engine, body, os_params(params, kwargs), rerank=rerank, ab_key=ab_key)


class RescoringElasticsearch(_Wrapper):
    """Wraps an `elasticsearch.Elasticsearch`: `search`/`msearch` rerank, all else passes through.
    Answers stay `ObjectApiResponse`s (their meta kept) with the reranked body."""

    def search(self, *, rerank: Any = None, ab_key: str | None = None, **kwargs: Any) -> Any:
        index, body, params, _ = es_split(kwargs)

        def engine(b: dict, p: dict) -> Any:
            return self.client.search(index=index, body=b, **es_kwargs(p))

        return self.rescorer.search(engine, body, params, rerank=rerank, ab_key=ab_key)

    def msearch(self, *, rerank: Any = None, ab_key: str | None = None, searches: Any = None, body: Any = None,
                **kwargs: Any) -> Any:
        def engine(lines: list, p: dict) -> Any:
            return self.client.msearch(searches=lines, **p)

        return self.rescorer.msearch(engine, searches if searches is not None else body, kwargs,
                                     rerank=rerank, ab_key=ab_key)
