"""The text the model sees for each hit of the window (pure functions over the engine's answer)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from rescore_sidecar.connectors._core.plan import SearchPlan
from rescore_sidecar.connectors.config import RerankOptions


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
