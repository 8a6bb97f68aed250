"""The reranking core behind the transport: validation, tokenization, queueing, scoring.

Transport-agnostic: each transport (sidecar/transport/) parses bytes, passes the request and the
time the client has left, and maps any exception with transport/errors.py.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from typing import Mapping

import numpy as np

from rescore_sidecar.connectors import tracing
from rescore_sidecar.sidecar import metrics
from rescore_sidecar.sidecar.core import traces
from rescore_sidecar.sidecar.backends import BI_ENCODER, CROSS_ENCODER, Backend
from rescore_sidecar.sidecar.core.queue import Job, ModelQueue
from rescore_sidecar.sidecar.core.cache import ScoreCache, keys as cache_keys, model_namespace
from rescore_sidecar.sidecar.config import SidecarConfig
from rescore_sidecar.sidecar.core.errors import DeadlineTooShort, NotReady, InvalidRequest, ModelNotFound, RequestTooLarge
from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.sidecar.core.tokenization import TokenizedRequest, tokenize_request

log = logging.getLogger(__name__)

_SCORE_MODES = {pb.SCORE_MODE_UNSPECIFIED, pb.SCORE_MODE_NORMALIZED, pb.SCORE_MODE_RAW}
_FALLBACK_LOGGED_MAX = 256  # distinct unknown names logged at WARNING; later ones at DEBUG (log volume)


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """Which served model a request's model name selects, and how."""

    served: str
    how: str  # "default" (no name), "name", "alias" (model_aliases) or "fallback" (accept_any_model)


def scores_from_rows(backend: Backend, rows: list[np.ndarray], raw: bool) -> list[float]:
    """Turns model output rows into one score per document (see ScoreMode in the proto).

    numpy, not torch: this runs on the event loop thread (see Backend.forward).
    """
    stacked = np.stack(rows).astype(np.float64)
    if backend.kind == CROSS_ENCODER:
        if stacked.shape[1] == 1:
            logits = stacked[:, 0]
            return (logits if raw else 1 / (1 + np.exp(-logits))).tolist()
        # Multi-label heads: the last label is taken as "relevant" (as in 2-label MS MARCO models).
        if raw:
            return stacked[:, -1].tolist()
        shifted = np.exp(stacked - stacked.max(axis=1, keepdims=True))
        return (shifted[:, -1] / shifted.sum(axis=1)).tolist()
    query, docs = stacked[0], stacked[1:]
    return (docs @ query).tolist()  # embeddings are L2-normalised: dot product = cosine


class RerankService:
    """Holds the models and their queues; serves Rerank and ListModels."""

    def __init__(self, config: SidecarConfig, backends: Mapping[str, Backend],
                 queues: Mapping[str, ModelQueue], tokenize_pool: concurrent.futures.Executor,
                 default_model: str, cache: ScoreCache | None = None) -> None:
        self.config = config
        self.cache = cache
        self._namespaces = {name: model_namespace(b) for name, b in backends.items()} if cache is not None else {}
        self.backends = dict(backends)
        self.queues = dict(queues)
        self.default_model = default_model
        self._tokenize_pool = tokenize_pool
        self.draining = False
        self.in_flight = 0  # Rerank calls between validation and response, for the drain
        self.aliases = dict(config.model_aliases)
        self._fallbacks_logged: set[str] = set()

    def choose_model(self, requested: str) -> ModelChoice:
        """The served model for a request's model name: its own, an alias's, or with accept_any_model
        the default one; else ModelNotFound naming what is served."""
        if not requested:
            return ModelChoice(self.default_model, "default")
        if requested in self.backends:
            return ModelChoice(requested, "name")
        aliases = self.aliases
        if requested in aliases:
            return ModelChoice(aliases[requested], "alias")
        if self.config.accept_any_model:
            level = logging.DEBUG
            if requested not in self._fallbacks_logged and len(self._fallbacks_logged) < _FALLBACK_LOGGED_MAX:
                self._fallbacks_logged.add(requested)
                level = logging.WARNING
            log.log(level, "model %r is not served; scoring with the default model %r (accept_any_model)",
                    requested, self.default_model)
            return ModelChoice(self.default_model, "fallback")
        also = f"; aliases: {', '.join(sorted(aliases))}" if aliases else ""
        raise ModelNotFound(f"model {requested!r} is not served here; served models: "
                            f"{', '.join(sorted(self.backends))}{also} (an operator can map hosted names with "
                            f"--model-alias NAME=SERVED)")

    async def rerank(self, request: pb.RerankRequest, time_remaining: float | None = None) -> pb.RerankResponse:
        traces.started(request, self.config.tracing_query_text)
        backend = self._validate(request, time_remaining)
        self.in_flight += 1
        try:
            return await self._rerank(backend, request, time_remaining)
        finally:
            self.in_flight -= 1

    def _validate(self, request: pb.RerankRequest, time_remaining: float | None) -> Backend:
        cfg = self.config
        if self.draining:
            raise NotReady("server is shutting down; send the request to another replica")
        if not request.query.strip():
            raise InvalidRequest("query is empty")
        if not request.documents:
            raise InvalidRequest("no documents to rerank")
        if len(request.documents) > cfg.max_documents:
            raise RequestTooLarge(f"{len(request.documents)} documents in one request; the limit is {cfg.max_documents}")
        size = request.ByteSize()
        if size > cfg.max_request_bytes:
            raise RequestTooLarge(f"request is {size} bytes; the limit is {cfg.max_request_bytes}")
        if request.score_mode not in _SCORE_MODES:
            raise InvalidRequest(f"unknown score_mode {request.score_mode}")
        backend = self.backends[self.choose_model(request.model).served]
        if time_remaining is not None and time_remaining * 1000 < cfg.min_deadline_ms:
            raise DeadlineTooShort(
                f"{time_remaining * 1000:.1f} ms left is below the {cfg.min_deadline_ms:g} ms this server needs")
        return backend

    async def _rerank(self, backend: Backend, request: pb.RerankRequest,
                      time_remaining: float | None) -> pb.RerankResponse:
        received = time.monotonic()
        deadline = received + time_remaining if time_remaining is not None else None
        queue = self.queues[backend.name]
        # Admission before tokenization: a request the queue cannot take costs no tokenizer time.
        queue.admit(len(request.documents) + (1 if backend.kind == BI_ENCODER else 0))
        loop = asyncio.get_running_loop()
        texts = [doc.text for doc in request.documents]
        started = time.perf_counter()
        # bypass_cache: no keys, so _rows neither reads nor fills the cache (a measured request pays full compute).
        namespace = None if request.bypass_cache else self._namespaces.get(backend.name)
        with tracing.span(tracing.TOKENIZE):
            tokenized, keys = await loop.run_in_executor(
                self._tokenize_pool, _prepare, backend, request.query, texts, request.max_query_tokens,
                request.max_document_tokens, namespace)
        if request.bypass_cache and self.cache is not None:
            metrics.CACHE_BYPASSED.labels(backend.name).inc(len(tokenized.sequences))
        tokenize_seconds = time.perf_counter() - started
        rows, job, hits = await self._rows(backend, queue, tokenized.sequences, keys, deadline)
        input_tokens = sum(len(sequence.ids) for sequence in tokenized.sequences)
        traces.scored(job, hits, input_tokens, backend.name)

        scores = scores_from_rows(backend, rows, raw=request.score_mode == pb.SCORE_MODE_RAW)
        order = rank_order(scores)
        if request.top_n:
            order = order[: request.top_n]
        truncated_count = sum(tokenized.truncated)
        name = backend.name
        metrics.PAIRS_SCORED.labels(name).inc(len(scores))
        if truncated_count:
            metrics.TRUNCATED.labels(name).inc(truncated_count)
        if tokenized.query_truncated:
            metrics.QUERY_TRUNCATED.labels(name).inc()
        finished = time.monotonic()
        queue_seconds = ((job.started_at or finished) - job.enqueued_at) if job else 0.0
        compute_seconds = job.compute_seconds if job else 0.0
        return pb.RerankResponse(
            results=[pb.Result(index=i, id=request.documents[i].id, score=scores[i],
                               truncated=tokenized.truncated[i]) for i in order],
            model=name,
            truncated_documents=truncated_count,
            query_truncated=tokenized.query_truncated,
            request_id=request.request_id,
            input_tokens=input_tokens,
            timings=pb.Timings(queue_ms=queue_seconds * 1000, tokenize_ms=tokenize_seconds * 1000,
                               compute_ms=compute_seconds * 1000, total_ms=(finished - received) * 1000),
        )

    async def _rows(self, backend: Backend, queue: ModelQueue, sequences: list, keys: list[bytes] | None,
                    deadline: float | None) -> tuple[list[np.ndarray], Job | None, int]:
        """The model's row for every sequence: from the cache, from another request's job, or computed;
        the job this request queued (None: none), and how many rows it did not compute (cache hits)."""
        loop = asyncio.get_running_loop()
        if self.cache is None or keys is None:
            job = Job(sequences, deadline, loop.create_future())
            queue.submit(job)
            await _wait([job], deadline)
            return job.rows, job, 0
        plan = self.cache.plan(backend.name, keys)
        job = None
        if plan.compute:
            job = Job([sequences[slot] for slot in plan.compute], deadline, loop.create_future())
            queue.submit(job)
            self.cache.register([keys[slot] for slot in plan.compute], job)
        joined = list({id(other): other for _, other, _ in plan.joins}.values())
        for other in joined:
            other.join(deadline)
        await _wait(([job] if job else []) + joined, deadline)
        rows = plan.rows
        if job:
            for index, slot in enumerate(plan.compute):
                rows[slot] = job.rows[index]
        for slot, other, index in plan.joins:
            rows[slot] = other.rows[index]
        for slot, source in plan.copies:
            rows[slot] = rows[source]
        return rows, job, len(keys) - len(plan.compute) - len(plan.copies)

    def list_models(self) -> pb.ListModelsResponse:
        kinds = {CROSS_ENCODER: pb.MODEL_KIND_CROSS_ENCODER}
        return pb.ListModelsResponse(
            models=[pb.ModelInfo(name=b.name, source=b.source, kind=kinds.get(b.kind, pb.MODEL_KIND_BI_ENCODER),
                                 max_length=b.max_length, max_query_tokens=b.max_query_tokens,
                                 dtype=b.dtype_name, device=str(b.device), is_default=b.name == self.default_model,
                                 num_labels=b.num_labels)
                    for b in self.backends.values()],
            max_documents=self.config.max_documents,
            max_request_bytes=self.config.max_request_bytes,
        )


def rank_order(scores: list[float]) -> list[int]:
    """Document indexes best first, by the scores as sent (protobuf float is float32): two scores
    that differ below float32 resolution arrive equal, so they must rank as equal, lower index first,
    or a client that re-sorts by score shows another order than ours."""
    sent = np.asarray(scores, dtype=np.float32).tolist()
    return sorted(range(len(scores)), key=lambda i: (-sent[i], i))


def _prepare(backend: Backend, query: str, texts: list[str], max_query_tokens: int, max_document_tokens: int,
             namespace: bytes | None) -> tuple[TokenizedRequest, list[bytes] | None]:
    """Tokenizes and, with the cache on, computes the sequences' cache keys (tokenizer pool)."""
    tokenized = tokenize_request(backend, query, texts, max_query_tokens, max_document_tokens)
    return tokenized, cache_keys(namespace, tokenized.sequences) if namespace is not None else None


async def _wait(jobs: list[Job], deadline: float | None) -> None:
    """Waits until every job has its rows; leaving (done, timed out or cancelled) releases them."""
    try:
        if jobs:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
            await asyncio.wait_for(asyncio.gather(*(asyncio.shield(job.future) for job in jobs)), timeout)
    finally:
        for job in jobs:
            job.release()  # the last user gone: queued work is dropped (no-op once done)
