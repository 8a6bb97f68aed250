"""What one Rerank request tells its `rescore.rerank` span (connectors.tracing): the request's size,
its cache hits, its queue wait and every forward pass it rode in. Queue wait and passes happen on
the batcher and the compute thread, shared by several requests: each request records them after
the fact, from the instants its `Job` noted, as its own child spans (a pass shared by N requests
is N spans, one in each request's trace, with the same times and batch attributes). No-ops when
tracing is off; never document text, and the query only with `tracing_query_text`."""
from __future__ import annotations

from typing import Any

from rescore_sidecar.connectors import tracing


def started(request: Any, query_text: bool) -> None:
    """The request's shape on the current (server) span."""
    span = tracing.current()
    if span.is_recording():
        span.set_attributes({"rescore.documents": len(request.documents), "rescore.model_requested": request.model,
                             "rescore.bypass_cache": request.bypass_cache})
        if request.request_id:
            span.set_attribute("rescore.request_id", request.request_id)
        if query_text:  # the operator's opt-in (tracing_query_text); documents are never recorded
            span.set_attribute("rescore.query", request.query)


def scored(job: Any, cache_hits: int, input_tokens: int, model: str) -> None:
    """After the rows are in: cache hits, the queue wait and one span per forward pass of `job`."""
    span = tracing.current()
    if not span.is_recording():
        return
    span.set_attributes({"rescore.cache_hits": cache_hits, "rescore.input_tokens": input_tokens, "rescore.model": model})
    if job is None:
        return
    if job.started_at is not None:
        tracing.record(tracing.QUEUE, job.enqueued_at, job.started_at, {"rescore.sequences": len(job.sequences)})
    for index, (start, end, pairs, tokens, padding) in enumerate(job.passes):
        tracing.record(tracing.FORWARD, start, end, {"rescore.batch_pairs": pairs, "rescore.batch_tokens": tokens,
                                                     "rescore.padding_ratio": round(padding, 4), "rescore.pass": index})
