"""Which requests the proxy looks into: searches, multi-searches and its own endpoints."""
from __future__ import annotations

from urllib.parse import parse_qsl, unquote

SEARCH = "search"
MSEARCH = "msearch"
HEALTH = "health"
METRICS = "metrics"
OPENAPI = "openapi"
FEEDBACK = "feedback"
OWN_UNKNOWN = "own_unknown"  # another method or path under /_rescore/: the proxy's namespace, never the engine's
# The proxy's own paths and the methods each answers.
OWN_METHODS = {"health": ("GET", "HEAD"), "metrics": ("GET",), "openapi.json": ("GET",), "feedback": ("POST",)}
OTHER = "other"

# Query-string parameter that toggles rescoring; removed before the engine sees the request.
TOGGLE_PARAM = "rescore"


def classify(method: str, raw_path: str) -> str:
    """Route of a request from its raw (still percent-encoded) path.

    Searches are `/_search`, `/{index}/_search`, `/_msearch`, `/{index}/_msearch` (GET or POST);
    `/_search/scroll`, `/_search/template`, `/_msearch/template` and the rest pass through.
    """
    parts = [p for p in raw_path.split("/") if p]
    if parts == ["_rescore", "health"] and method in ("GET", "HEAD"):
        return HEALTH
    if parts == ["_rescore", "metrics"] and method == "GET":
        return METRICS
    if parts == ["_rescore", "openapi.json"] and method == "GET":
        return OPENAPI
    if parts == ["_rescore", "feedback"] and method == "POST":
        return FEEDBACK
    if parts and unquote(parts[0]) == "_rescore":
        return OWN_UNKNOWN
    if method not in ("GET", "POST") or not parts or len(parts) > 2:
        return OTHER
    # Index names never start with "_", so `/_all/_search` is the only "_" target allowed.
    if len(parts) == 2 and parts[0].startswith("_") and unquote(parts[0]) != "_all":
        return OTHER
    if parts[-1] == "_search":
        return SEARCH
    if parts[-1] == "_msearch":
        return MSEARCH
    return OTHER


def split_toggle(raw_query: str) -> tuple[str, str | None]:
    """(query string without the toggle parameter, toggle value or None).

    The rest of the query string is kept byte for byte, order and encoding included.
    """
    if not raw_query or TOGGLE_PARAM not in raw_query:
        return raw_query, None
    kept, value = [], None
    for item in raw_query.split("&"):
        key, _, raw_value = item.partition("=")
        if unquote(key) == TOGGLE_PARAM:
            value = unquote(raw_value.replace("+", " "))
        else:
            kept.append(item)
    return "&".join(kept), value


def query_params(raw_query: str) -> dict[str, str]:
    """Decoded query-string parameters (last value wins), for the decisions the proxy makes."""
    return dict(parse_qsl(raw_query, keep_blank_values=True))
