"""Score cache: model output rows remembered by the exact model input, bounded by memory.

A row is what the model returns for one sequence: a pair's logits (cross-encoder) or a
text's embedding (bi-encoder). The key is a 128-bit BLAKE2b digest of the model's identity
(name, source, kind, runtime, precision) and the sequence's exact token ids and type ids,
so anything that changes the input (truncation settings, query budget, tokenizer) changes
the key, and a cached row is the row the model would return. A repeated pair costs no
forward pass; for a bi-encoder, a document seen before embeds nothing.

Concurrent requests for the same uncached sequence compute it once: the first request's
queued job is registered in `in_flight` under each key, and later requests wait for that
job instead of queueing the sequence again.

Everything here runs on the event loop thread (no locks), except `keys`, which is pure and
runs beside tokenization in the tokenizer pool.
"""
from __future__ import annotations

import array
import collections
import dataclasses
import hashlib
from typing import Any, Sequence

import numpy as np

from rescore_sidecar.sidecar import metrics

# Estimated bytes one entry costs beyond its row: the key (a 16-byte bytes object), the row's
# bytes object header and the ordered dict's slot and link. Counted so that small rows
# (a cross-encoder's single logit) still respect the size setting.
ENTRY_OVERHEAD = 200
ROW_DTYPE = np.float32


def model_namespace(model: Any) -> bytes:
    """What identifies a model's outputs besides its input ids: name, source, kind, runtime, precision."""
    runtime = getattr(model, "runtime", "torch")
    precision = getattr(model, "precision", model.dtype_name)
    return "\0".join(map(str, (model.name, model.source, model.kind, runtime, precision))).encode()


def keys(namespace: bytes, sequences: Sequence[Any]) -> list[bytes]:
    """One 16-byte key per sequence (`.ids`, `.type_ids`)."""
    base = hashlib.blake2b(namespace, digest_size=16)
    out = []
    for seq in sequences:
        h = base.copy()
        h.update(array.array("i", seq.ids).tobytes())
        if seq.type_ids is not None:
            h.update(b"\xff")
            h.update(array.array("i", seq.type_ids).tobytes())
        out.append(h.digest())
    return out


@dataclasses.dataclass
class Plan:
    """Where each sequence of one request gets its row from."""

    rows: list[np.ndarray | None]      # cache hits, filled in; None = still to come
    compute: list[int]                 # slots this request queues itself (one per distinct missing key)
    joins: list[tuple[int, Any, int]]  # (slot, another request's job, index in that job)
    copies: list[tuple[int, int]]      # (slot, earlier slot with the same key in this request)


class ScoreCache:
    """LRU map key -> row bytes, at most `max_bytes` (estimated, see ENTRY_OVERHEAD)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._rows: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()
        self.in_flight: dict[bytes, tuple[Any, int]] = {}  # key -> (job computing it, index in the job)
        metrics.CACHE_MAX_BYTES.set(max_bytes)

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: bytes) -> np.ndarray | None:
        data = self._rows.get(key)
        if data is None:
            return None
        self._rows.move_to_end(key)
        return np.frombuffer(data, dtype=ROW_DTYPE)

    def put(self, key: bytes, row: np.ndarray) -> None:
        data = np.ascontiguousarray(row, dtype=ROW_DTYPE).tobytes()
        cost = len(data) + ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return
        old = self._rows.pop(key, None)
        if old is not None:
            self.bytes -= len(old) + ENTRY_OVERHEAD
        self._rows[key] = data
        self.bytes += cost
        evicted = 0
        while self.bytes > self.max_bytes:
            _, dropped = self._rows.popitem(last=False)
            self.bytes -= len(dropped) + ENTRY_OVERHEAD
            evicted += 1
        if evicted:
            metrics.CACHE_EVICTIONS.inc(evicted)
        metrics.CACHE_BYTES.set(self.bytes)
        metrics.CACHE_ENTRIES.set(len(self._rows))

    def plan(self, model_name: str, request_keys: Sequence[bytes]) -> Plan:
        """Splits a request's sequences into hits, sequences to compute and joins of in-flight jobs."""
        rows: list[np.ndarray | None] = [None] * len(request_keys)
        compute: list[int] = []
        joins: list[tuple[int, Any, int]] = []
        copies: list[tuple[int, int]] = []
        first: dict[bytes, int] = {}
        hits = 0
        for slot, key in enumerate(request_keys):
            row = self.get(key)
            if row is not None:
                rows[slot] = row
                hits += 1
            elif key in first:
                copies.append((slot, first[key]))
            elif key in self.in_flight and not _failed(self.in_flight[key][0]):
                job, index = self.in_flight[key]
                joins.append((slot, job, index))
                first[key] = slot
            else:
                compute.append(slot)
                first[key] = slot
        metrics.CACHE_HITS.labels(model_name).inc(hits + len(joins))
        metrics.CACHE_MISSES.labels(model_name).inc(len(compute))
        if joins:
            metrics.CACHE_SHARED.labels(model_name).inc(len(joins))
        return Plan(rows, compute, joins, copies)

    def register(self, job_keys: Sequence[bytes], job: Any) -> None:
        """Marks `job` as computing `job_keys` (in job order); its rows are stored when it finishes."""
        for index, key in enumerate(job_keys):
            self.in_flight[key] = (job, index)
        job.future.add_done_callback(lambda future: self._finished(job_keys, job, future))

    def _finished(self, job_keys: Sequence[bytes], job: Any, future) -> None:
        ok = not future.cancelled() and future.exception() is None
        for index, key in enumerate(job_keys):
            if self.in_flight.get(key, (None,))[0] is job:
                del self.in_flight[key]
            if ok:
                self.put(key, job.rows[index])


def _failed(job: Any) -> bool:
    """Whether `job` ended without rows (cancelled or raised): joining it would fail the joiner."""
    future = job.future
    return future.done() and (future.cancelled() or future.exception() is not None)
