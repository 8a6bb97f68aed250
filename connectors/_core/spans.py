"""What one search tells its `rescore.search` span (connectors.tracing): the plan's policy and the
outcome the `_rescore` marker carries (window and why, arm, fallback reason). Shared by the wrappers
and the proxy; no-ops when tracing is off. Never any query or document text."""
from __future__ import annotations

from typing import Any, Mapping

from rescore_sidecar.connectors import tracing
from rescore_sidecar.connectors._core.shape import MARKER_KEY


def planned(plan: Any) -> None:
    """The options a search was planned with, on the current span (`rescore.search`)."""
    span = tracing.current()
    if span.is_recording():
        options = plan.options
        span.set_attributes({"rescore.policy": options.policy, "rescore.window_requested": options.window,
                             "rescore.enabled": bool(options.enabled)})
        if plan.skip is not None:
            span.set_attribute("rescore.skipped", plan.skip)


def _body(answer: Any) -> Any:
    return answer.body if hasattr(answer, "body") and hasattr(answer, "meta") else answer


def attributes(answer: Any) -> dict[str, Any]:
    """Span attributes from a response's marker (msearch: from its searches' markers)."""
    body = _body(answer)
    if not isinstance(body, Mapping):
        return {}
    marks = [body.get(MARKER_KEY)] if MARKER_KEY in body else [
        r.get(MARKER_KEY) for r in body.get("responses", []) if isinstance(r, Mapping)]
    marks = [m for m in marks if isinstance(m, Mapping)]
    if not marks:
        return {}
    out: dict[str, Any] = {"rescore.searches": len(marks)} if "responses" in body else {}
    fallbacks = sorted({str(m["fallback"]) for m in marks if m.get("fallback")})
    skipped = sorted({str(m["skipped"]) for m in marks if m.get("skipped")})
    out["rescore.outcome"] = ("fallback" if fallbacks else "reranked" if any(m.get("reranked") for m in marks)
                              else "skipped")
    if fallbacks:
        out["rescore.fallback_reason"] = ",".join(fallbacks)
    if skipped:
        out["rescore.skipped"] = ",".join(skipped)
    out["rescore.window"] = max(int(m.get("window") or 0) for m in marks)
    reasons = sorted({str(m["window_reason"]) for m in marks if m.get("window_reason")})
    if reasons:
        out["rescore.window_reason"] = ",".join(reasons)
    arms = sorted({str(m["arm"]) for m in marks if m.get("arm")})
    if arms:
        out["rescore.arm"] = ",".join(arms)
    return out


def marked(span: Any, answer: Any) -> Any:
    """Sets the outcome of `answer` on `span`; returns `answer` unchanged."""
    if span.is_recording():
        span.set_attributes(attributes(answer))
    return answer
