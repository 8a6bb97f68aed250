"""The engine-agnostic rescoring core: pure functions over JSON-like dicts.

`plan_search` turns the caller's search body into the one sent to the engine (the whole rescore
window from offset 0, `_source` widened to the text fields) and remembers what the caller asked
for; `documents` pulls the text of the window's hits; `apply_scores` reorders the window by the
model's scores, slices the caller's page and strips what was added; `engine_order` does the
same without reordering (fallback). No I/O here: the Python wrappers and the HTTP proxy share it.
"""
from __future__ import annotations

import copy
import dataclasses
from fnmatch import fnmatchcase
from typing import Any, Mapping, Sequence

from rescore_sidecar.connectors.config import RerankOptions

DEFAULT_SIZE = 10
MARKER_KEY = "_rescore"
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


def marker(*, reranked: bool, arm: str | None = None, fallback: str | None = None, model: str = "",
           took_ms: float = 0.0, skipped: str | None = None) -> dict:
    """The top-level `_rescore` entry every response handled by a connector carries."""
    return {"reranked": reranked, "arm": arm, "fallback": fallback, "skipped": skipped, "model": model,
            "took_ms": round(took_ms, 3)}


# --------------------------------------------------------------------------- planning

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


# --------------------------------------------------------------------------- text

def _values_at(obj: Any, parts: Sequence[str]) -> list[Any]:
    if not parts:
        return obj if isinstance(obj, list) else [obj]
    if isinstance(obj, list):
        return [v for item in obj for v in _values_at(item, parts)]
    if not isinstance(obj, Mapping):
        return []
    # A literal dotted key ("a.b": ...) as well as nested objects.
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in obj:
            return _values_at(obj[key], parts[i:])
    return []


def hit_text(hit: Mapping, options: RerankOptions) -> str | None:
    """The text the model sees for a hit: its fields joined, capped at `max_chars`; None if empty."""
    source = hit.get("_source")
    if not isinstance(source, Mapping):
        return None
    pieces = []
    for field in options.fields:
        values = [v for v in _values_at(source, field.split(".")) if v is not None and not isinstance(v, (dict, list))]
        text = " ".join(str(v) for v in values).strip()
        if text:
            pieces.append(text)
    if not pieces:
        return None
    return options.separator.join(pieces)[: options.max_chars]


def documents(response: Mapping, plan: SearchPlan) -> list[tuple[int, str]]:
    """(position in the window, text) of each window hit that has text."""
    hits = response.get("hits", {}).get("hits", [])[: plan.options.window]
    docs = []
    for i, hit in enumerate(hits):
        text = hit_text(hit, plan.options)
        if text is not None:
            docs.append((i, text))
    return docs


# --------------------------------------------------------------------------- applying scores

def _minmax(values: Sequence[float]) -> list[float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        return [1.0 for _ in values]
    return [(v - lo) / (hi - lo) for v in values]


def _fused_scores(engine: Sequence[float | None], model: Sequence[float | None], options: RerankOptions) -> list[float]:
    """New scores of the window's hits under the policy. Hits without a model score (no text)
    count as the lowest model score (replace, linear) or get no model term (rrf)."""
    known = [m for m in model if m is not None]
    floor = min(known) if known else 0.0
    if options.policy == "replace":
        return [floor if m is None else float(m) for m in model]
    if options.policy == "linear":
        eng = _minmax([e if e is not None else 0.0 for e in engine])
        mod = _minmax([floor if m is None else m for m in model])
        mod = [0.0 if m is None else v for v, m in zip(mod, model)]
        w = options.model_weight
        return [w * m + (1 - w) * e for e, m in zip(eng, mod)]
    # rrf: ranks are 1-based; model rank among hits that have a model score (ties: engine order).
    order = sorted((i for i, m in enumerate(model) if m is not None), key=lambda i: (-model[i], i))
    model_rank = {i: r + 1 for r, i in enumerate(order)}
    k = options.rrf_k
    return [1.0 / (k + i + 1) + (1.0 / (k + model_rank[i]) if i in model_rank else 0.0) for i in range(len(model))]


def _remove_path(obj: Any, parts: Sequence[str]) -> None:
    if isinstance(obj, list):
        for item in obj:
            _remove_path(item, parts)
        return
    if not isinstance(obj, dict):
        return
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in obj:
            if i == len(parts):
                del obj[key]
            else:
                _remove_path(obj[key], parts[i:])
                if obj[key] in ({}, []):  # a parent that only held what we added
                    del obj[key]
            return


def _prune(obj: Any, pattern: str, prefix: str = "") -> None:
    if isinstance(obj, list):
        for item in obj:
            _prune(item, pattern, prefix)
        return
    if not isinstance(obj, dict):
        return
    for key in list(obj):
        path = f"{prefix}{key}"
        if fnmatchcase(path, pattern):
            del obj[key]
        else:
            _prune(obj[key], pattern, path + ".")


def _caller_shape(hit: dict, plan: SearchPlan) -> dict:
    """The hit as the caller's own request would have returned it (our `_source` additions gone)."""
    if plan.drop_source:
        hit.pop("_source", None)
    elif (plan.strip_paths or plan.strip_patterns) and isinstance(hit.get("_source"), dict):
        source = copy.deepcopy(hit["_source"])
        for path in plan.strip_paths:
            _remove_path(source, path.split("."))
        for pattern in plan.strip_patterns:
            _prune(source, pattern)
        hit["_source"] = source
    return hit


def _with_hits(response: Mapping, hits: list[dict], max_score: Any, mark: dict) -> dict:
    out = dict(response)
    hits_section = dict(response.get("hits", {}))
    hits_section["hits"] = hits
    if "max_score" in hits_section or hits:
        hits_section["max_score"] = max_score
    out["hits"] = hits_section
    out[MARKER_KEY] = mark
    return out


def engine_order(response: Mapping, plan: SearchPlan, mark: dict) -> dict:
    """Fallback: the caller's page in engine order, in the shape the caller asked for."""
    hits = response.get("hits", {}).get("hits", [])
    if plan.skip is not None:
        return _with_hits(response, list(hits), response.get("hits", {}).get("max_score"), mark)
    page = [_caller_shape(dict(h), plan) for h in hits[plan.offset: plan.offset + plan.size]]
    return _with_hits(response, page, response.get("hits", {}).get("max_score"), mark)


def apply_scores(response: Mapping, plan: SearchPlan, scores: Mapping[int, float], mark: dict) -> dict:
    """Reorders the window by `scores` ({window position: model score}), then slices and strips.

    Hits after the window keep their engine order and `_score` (as the engines' own `rescore`
    does); `max_score` is the highest `_score` of the reordered list.
    """
    hits = response.get("hits", {}).get("hits", [])
    window, rest = hits[: plan.options.window], hits[plan.options.window:]
    engine_scores = [h.get("_score") for h in window]
    model_scores = [scores.get(i) for i in range(len(window))]
    fused = _fused_scores(engine_scores, model_scores, plan.options)
    # Ties: hits with text first, then engine order.
    order = sorted(range(len(window)), key=lambda i: (-fused[i], model_scores[i] is None, i))
    reordered: list[dict] = []
    for i in order:
        hit = dict(window[i])
        hit["_score"] = fused[i]
        if plan.explain:
            hit[MARKER_KEY] = {"engine_score": engine_scores[i], "engine_rank": i + 1, "model_score": model_scores[i]}
        reordered.append(hit)
    full = reordered + [dict(h) for h in rest]
    numeric = [h["_score"] for h in full if isinstance(h.get("_score"), (int, float))]
    max_score = max(numeric) if numeric else None
    page = [_caller_shape(h, plan) for h in full[plan.offset: plan.offset + plan.size]]
    return _with_hits(response, page, max_score, mark)
