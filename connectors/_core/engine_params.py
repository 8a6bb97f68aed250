"""opensearch-py / elasticsearch-py keyword arguments as a search body and URL parameters, and back
(pure functions the sync and async wrappers share)."""
from __future__ import annotations

from typing import Any, Mapping

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
