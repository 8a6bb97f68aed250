"""Cross-request dynamic batching: one queue per model, one compute thread per device.

Requests put their tokenized sequences on their model's queue. A batching loop per
model waits briefly for work to accumulate (at most `max_wait_ms` once something is
queued), takes sequences first-come first-served up to the token budget, sorts them
by length so that padding stays small, cuts them into forward passes of at most
`max_batch_tokens` padded tokens and `max_batch_pairs` sequences, and runs them
through the backend's pipeline (core/pipeline.py: on CPU one call on the device's single
compute thread; on CUDA the next batch is prepared while the current one computes).
Sequences of requests that were cancelled or ran past their deadline are dropped before
compute, as late as possible. Each request gets its own rows back in its own order.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import time
from typing import Sequence

import numpy as np

from rescore_sidecar.connectors import tracing
from rescore_sidecar.sidecar import metrics
from rescore_sidecar.sidecar.backends import Backend, TokenizedSequence
from rescore_sidecar.sidecar.backends.base import EagerStages
from rescore_sidecar.sidecar.core.pipeline import Pipeline
from rescore_sidecar.sidecar.core.profiling import BatchProfiler
from rescore_sidecar.sidecar.core.errors import Overloaded, RequestTooLarge

log = logging.getLogger(__name__)


# Padded tokens per forward pass when `max_batch_tokens` is not set, by device type. CPU: 16384, the
# figure the CPU benchmarks were measured with (a CPU is saturated long before). CUDA: 65536 = 128
# pairs of 512 tokens (= max_batch_pairs): issue 26's model-alone runs on an H200 still gained from
# batch 32 to 128 (MiniLM at 256 tokens: 11.8k -> 26.7k pairs/s), and 16384 is only 32 pairs of 512.
# Not yet a measured optimum: bench/gpu.py sweeps 16k/32k/64k on a GPU (docs/gpu.md).
DEVICE_BATCH_TOKENS = {"cpu": 16384, "cuda": 65536}


def default_batch_tokens(device: object) -> int:
    """The token budget for a model on `device` (torch.device or a name like "cuda:1"); CPU's for others."""
    kind = getattr(device, "type", None) or str(device).partition(":")[0]
    return DEVICE_BATCH_TOKENS.get(kind, DEVICE_BATCH_TOKENS["cpu"])


@dataclasses.dataclass(frozen=True)
class BatchLimits:
    max_batch_tokens: int = 16384
    max_batch_pairs: int = 128
    max_wait_ms: float = 2.0
    max_queue_pairs: int = 20000


@dataclasses.dataclass(eq=False)
class Job:
    """The sequences of one request, and where their results go."""

    sequences: list[TokenizedSequence]
    deadline: float | None  # time.monotonic() value, None = no deadline
    future: asyncio.Future
    enqueued_at: float = dataclasses.field(default_factory=time.monotonic)
    rows: list[np.ndarray | None] = dataclasses.field(default_factory=list)
    remaining: int = 0
    started_at: float | None = None  # first forward pass carrying this job
    compute_seconds: float = 0.0
    abandoned: bool = False  # cancelled by the client or past its deadline
    users: int = 1  # requests waiting for these rows: the one that queued them and any that joined it
    # The forward passes it rode in, (start, end, pairs, padded tokens, padding ratio), when tracing (core/traces.py).
    passes: list[tuple[float, float, int, int, float]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.rows = [None] * len(self.sequences)
        self.remaining = len(self.sequences)

    def join(self, deadline: float | None) -> None:
        """Another request waits for these rows too: it keeps them alive until its own deadline."""
        self.users += 1
        if self.deadline is not None:
            self.deadline = None if deadline is None else max(self.deadline, deadline)

    def release(self) -> None:
        """One waiting request is gone; the last one abandons what is not computed yet."""
        self.users -= 1
        if self.users <= 0:
            self.abandoned = True
            if not self.future.done():
                self.future.cancel()

    def is_dead(self, now: float) -> bool:
        return self.abandoned or self.future.done() or (self.deadline is not None and now >= self.deadline)


@dataclasses.dataclass
class _Item:
    job: Job
    slot: int

    @property
    def length(self) -> int:
        return len(self.job.sequences[self.slot].ids)


def plan_batches(lengths: Sequence[int], max_tokens: int, max_pairs: int) -> list[list[int]]:
    """Groups item indices into forward passes, shortest first.

    Each group's padded size (longest length x count) stays within max_tokens and
    its count within max_pairs; a single over-long item still gets its own group.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = lengths[index]  # ascending order: the newest item is the longest
        if current and ((len(current) + 1) * width > max_tokens or len(current) + 1 > max_pairs):
            groups.append(current)
            current = []
        current.append(index)
    if current:
        groups.append(current)
    return groups


class ModelQueue:
    """The queue and batching loop of one model."""

    def __init__(self, backend: Backend, compute: concurrent.futures.Executor, limits: BatchLimits,
                 profiler: BatchProfiler | None = None) -> None:
        self.backend = backend
        self.limits = limits
        self._compute = compute
        self._pending: collections.deque[_Item] = collections.deque()
        self._pending_tokens = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._depth = metrics.QUEUE_DEPTH.labels(backend.name)
        # a backend without stages (test doubles, tools) runs `forward` as one stage
        stages = backend.stages if hasattr(backend, "stages") else EagerStages(lambda batch: backend.forward(batch))
        self._pipeline = Pipeline(stages, compute, backend.name, profiler)

    @property
    def depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.backend.name}")

    async def close(self) -> None:
        """Stops batching; requests still waiting for rows get their futures cancelled (none hangs)."""
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._pipeline.close()
        while self._pending:
            future = self._pending.popleft().job.future
            if not future.done():
                future.cancel()
        self._pending_tokens = 0

    def admit(self, count: int) -> None:
        """Raises RequestTooLarge or Overloaded unless the queue can take `count` more sequences now."""
        if count > self.limits.max_queue_pairs:  # could never fit: not a transient overload
            raise RequestTooLarge(f"request needs {count} sequences on model {self.backend.name!r}; "
                                  f"the limit is {self.limits.max_queue_pairs} (max_queue_pairs)")
        if len(self._pending) + count > self.limits.max_queue_pairs:
            raise Overloaded(
                f"model {self.backend.name!r} has {len(self._pending)} sequences queued; "
                f"{count} more would pass the limit of {self.limits.max_queue_pairs}, retry later")

    def submit(self, job: Job) -> None:
        """Queues every sequence of `job`; raises as `admit` when the queue cannot take it."""
        self.admit(len(job.sequences))
        for slot in range(len(job.sequences)):
            item = _Item(job, slot)
            self._pending.append(item)
            self._pending_tokens += item.length
        self._depth.set(len(self._pending))
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._pipeline.wait_free()  # take work only when it can start: batches stay full
            await self._gather()
            items = self._take()
            if items:
                try:
                    await self._execute(items)
                except asyncio.CancelledError:  # closing: what was taken but not started is not computed
                    for item in items:
                        item.job.future.cancel()
                    raise

    async def _gather(self) -> None:
        """Waits up to max_wait_ms for the token budget or pair cap to fill."""
        limits = self.limits
        until = time.monotonic() + limits.max_wait_ms / 1000
        while (self._pending_tokens < limits.max_batch_tokens and len(self._pending) < limits.max_batch_pairs):
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[_Item]:
        """Pops live items first-come first-served up to the token budget."""
        now = time.monotonic()
        taken: list[_Item] = []
        tokens = 0
        dropped = 0
        budget = self.limits.max_batch_tokens
        while self._pending:
            item = self._pending[0]
            if item.job.is_dead(now):
                self._pending.popleft()
                self._pending_tokens -= item.length
                dropped += 1
                continue
            if taken and tokens + item.length > budget:
                break
            self._pending.popleft()
            self._pending_tokens -= item.length
            taken.append(item)
            tokens += item.length
        if dropped:
            metrics.SEQUENCES_DROPPED.labels(self.backend.name).inc(dropped)
        self._depth.set(len(self._pending))
        return taken

    async def _execute(self, items: list[_Item]) -> None:
        lengths = [item.length for item in items]
        for group in plan_batches(lengths, self.limits.max_batch_tokens, self.limits.max_batch_pairs):
            await self._pipeline.acquire()  # a slot first, so liveness is checked as late as possible
            now = time.monotonic()
            batch = [items[i] for i in group if not items[i].job.is_dead(now)]
            if len(batch) < len(group):
                metrics.SEQUENCES_DROPPED.labels(self.backend.name).inc(len(group) - len(batch))
            if not batch:
                self._pipeline.release()
                continue
            for item in batch:
                if item.job.started_at is None:
                    item.job.started_at = now
                    metrics.QUEUE_WAIT.labels(self.backend.name).observe(now - item.job.enqueued_at)
            sequences = [item.job.sequences[item.slot] for item in batch]
            self._pipeline.start(sequences, lambda rows, elapsed, batch=batch: self._finish(batch, rows, elapsed))

    def _finish(self, batch: list[_Item], rows: np.ndarray | BaseException, elapsed: float) -> None:
        """A batch's rows (or its failure) to its requests, on the event loop."""
        if isinstance(rows, asyncio.CancelledError):  # the queue is closing
            for item in batch:
                item.job.future.cancel()
            return
        if isinstance(rows, BaseException):  # fail this pass's requests only; the loop keeps serving
            log.error("forward pass failed for model %s", self.backend.name, exc_info=rows)
            for item in batch:
                if not item.job.future.done():
                    item.job.future.set_exception(rows)
            return
        sequences = [item.job.sequences[item.slot] for item in batch]
        self._observe(sequences, elapsed)
        if tracing.active():
            _note_pass(batch, sequences, elapsed)
        self._deliver(batch, rows, elapsed)

    def _observe(self, sequences: list[TokenizedSequence], elapsed: float) -> None:
        name = self.backend.name
        real = sum(len(seq.ids) for seq in sequences)
        padded = max(len(seq.ids) for seq in sequences) * len(sequences)
        metrics.BATCH_SIZE.labels(name).observe(len(sequences))
        metrics.BATCH_TOKENS.labels(name).observe(padded)
        metrics.PADDING_RATIO.labels(name).observe(1 - real / padded)
        metrics.COMPUTE_SECONDS.labels(name).observe(elapsed)

    @staticmethod
    def _deliver(batch: list[_Item], rows: np.ndarray, elapsed: float) -> None:
        jobs_seen: set[int] = set()
        for row, item in zip(rows, batch):
            job = item.job
            if id(job) not in jobs_seen:
                jobs_seen.add(id(job))
                job.compute_seconds += elapsed
            job.rows[item.slot] = row
            job.remaining -= 1
            if job.remaining == 0 and not job.future.done():
                job.future.set_result(job.rows)


def _note_pass(batch: list[_Item], sequences: list[TokenizedSequence], elapsed: float) -> None:
    """Notes this forward pass on each job in it, for its requests' `rescore.forward` spans."""
    end = time.monotonic()
    real = sum(len(seq.ids) for seq in sequences)
    padded = max(len(seq.ids) for seq in sequences) * len(sequences)
    entry = (end - elapsed, end, len(sequences), padded, 1 - real / padded)
    for job in {id(item.job): item.job for item in batch}.values():
        job.passes.append(entry)
