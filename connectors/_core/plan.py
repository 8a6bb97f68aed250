"""Planning one search, without I/O: the body sent to the engine and what the caller asked for.

`plan_search` turns the caller's search body into the one sent to the engine (the whole rescore
window from offset 0, `_source` widened to the text fields) and remembers what the caller asked
for in a `SearchPlan`; a request that cannot be reranked (scroll, sort, ...) gets `skip` set.
"""
from __future__ import annotations

import dataclasses
from fnmatch import fnmatchcase
from typing import Any, Mapping, Sequence

from rescore_sidecar.connectors.config import RerankOptions

DEFAULT_SIZE = 10
# Query clauses whose text is the user's query: {clause: {field: text | {"query": text}}}.
_FIELD_CLAUSES = ("match", "match_phrase", "match_phrase_prefix", "match_bool_prefix")
# Clauses carrying {"query": text} directly.
_QUERY_CLAUSES = ("multi_match", "combined_fields", "query_string", "simple_query_string")
# Clauses that never hold the user's text (skipped when looking for it).
_NON_SCORING = ("filter", "must_not")


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    """What to send to the engine and how to turn its answer into the caller's response."""

    body: dict
    params: dict
    options: RerankOptions
    # Set when this request is not reranked (sent unchanged): disabled, scroll, search_after, ...
    skip: str | None = None
    query_text: str = ""
    offset: int = 0
    size: int = DEFAULT_SIZE
    # `_source` handling: paths added for us, exclude patterns to re-apply, drop `_source` entirely.
    strip_paths: tuple[str, ...] = ()
    strip_patterns: tuple[str, ...] = ()
    drop_source: bool = False
    explain: bool = False


def _as_int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")
    return number


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _source_spec(body: Mapping, params: Mapping) -> tuple[bool, list[str], list[str]]:
    """(enabled, includes, excludes) of the request, URL params taking precedence over the body."""
    enabled, includes, excludes = True, [], []
    src = body.get("_source")
    if isinstance(src, bool):
        enabled = src
    elif isinstance(src, (str, list, tuple)):
        includes = _split(src)
    elif isinstance(src, Mapping):
        includes = _split(src.get("includes", src.get("include")))
        excludes = _split(src.get("excludes", src.get("exclude")))
    if "_source" in params:
        raw = params["_source"]
        if isinstance(raw, bool) or str(raw).lower() in ("true", "false"):
            enabled, includes, excludes = str(raw).lower() == "true", [], []
        else:
            enabled, includes = True, _split(raw)
    if params.get("_source_includes") is not None:
        enabled, includes = True, _split(params["_source_includes"])
    if params.get("_source_excludes") is not None:
        enabled, excludes = True, _split(params["_source_excludes"])
    return enabled, includes, excludes


def _covered(path: str, patterns: Sequence[str]) -> bool:
    """Whether a source filter pattern selects `path` or one of its parent objects."""
    parts = path.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatchcase(p, pat) for pat in patterns for p in prefixes)


def _excludes_touch(path: str, pattern: str) -> bool:
    # The pattern drops the field, one of its parents, or something inside it.
    return _covered(path, [pattern]) or pattern.startswith(path + ".")


def _sorted_by_score(sort: Any) -> bool:
    items = sort if isinstance(sort, list) else [sort]
    for item in items:
        name = item if isinstance(item, str) else next(iter(item), None) if isinstance(item, Mapping) else None
        if name != "_score":
            return False
    return True


def extract_query_text(query: Any) -> str | None:
    """The text of the first match-like clause of a query DSL tree (depth first)."""
    if isinstance(query, list):
        for item in query:
            text = extract_query_text(item)
            if text:
                return text
        return None
    if not isinstance(query, Mapping):
        return None
    for clause in _FIELD_CLAUSES:
        spec = query.get(clause)
        if isinstance(spec, Mapping) and spec:
            value = next(iter(spec.values()))
            text = value.get("query") if isinstance(value, Mapping) else value
            if isinstance(text, str) and text.strip():
                return text
    for clause in _QUERY_CLAUSES:
        spec = query.get(clause)
        if isinstance(spec, Mapping) and isinstance(spec.get("query"), str) and spec["query"].strip():
            return spec["query"]
    for key, value in query.items():
        if key in _NON_SCORING or key in _FIELD_CLAUSES or key in _QUERY_CLAUSES:
            continue
        text = extract_query_text(value)
        if text:
            return text
    return None


def plan_search(body: Mapping | None, params: Mapping | None, options: RerankOptions) -> SearchPlan:
    """Plans one search. A request that cannot be reranked gets `skip` set and is sent unchanged.

    Raises ValueError for malformed `from`/`size` (the engine would reject them too).
    """
    body = dict(body or {})
    params = dict(params or {})
    original = SearchPlan(body=body, params=params, options=options)
    if not options.enabled:
        return dataclasses.replace(original, skip="disabled")
    if params.get("scroll") is not None or body.get("scroll") is not None:
        return dataclasses.replace(original, skip="scroll")
    if body.get("search_after") is not None or params.get("search_after") is not None:
        return dataclasses.replace(original, skip="search_after")
    if (body.get("sort") is not None and not _sorted_by_score(body["sort"])) or params.get("sort"):
        return dataclasses.replace(original, skip="sort")
    if params.get("filter_path"):
        return dataclasses.replace(original, skip="filter_path")
    offset = _as_int(params.pop("from", body.get("from", 0)) or 0, "from")
    size = _as_int(params.pop("size", body.get("size", DEFAULT_SIZE)), "size")
    if size == 0:
        return dataclasses.replace(original, skip="size_zero")
    query_text = options.query or extract_query_text(body.get("query")) or params.get("q")
    if not query_text:
        return dataclasses.replace(original, skip="no_query_text")

    new_body = dict(body)
    new_body["from"] = 0
    new_body["size"] = max(options.window, offset + size)

    enabled, includes, excludes = _source_spec(body, params)
    for key in ("_source", "_source_includes", "_source_excludes"):
        params.pop(key, None)
    fields = list(options.fields)
    strip_paths: list[str] = []
    strip_patterns: list[str] = []
    drop_source = False
    if not enabled:
        new_body["_source"] = {"includes": fields}
        drop_source = True
    elif includes or excludes:
        if includes:
            strip_paths = [f for f in fields if not _covered(f, includes)]
            includes = includes + strip_paths
        strip_patterns = [e for e in excludes if any(_excludes_touch(f, e) for f in fields)]
        excludes = [e for e in excludes if e not in strip_patterns]
        spec: dict = {}
        if includes:
            spec["includes"] = includes
        if excludes:
            spec["excludes"] = excludes
        new_body["_source"] = spec or True
    elif "_source" in body:
        new_body["_source"] = True
    return SearchPlan(body=new_body, params=params, options=options, query_text=query_text, offset=offset,
                      size=size, strip_paths=tuple(strip_paths), strip_patterns=tuple(strip_patterns),
                      drop_source=drop_source, explain=bool(body.get("explain")) or options.explain)
