"""Runs one model's batches through its backend's stages (backends/base.py `Stages`), overlapped.

With `depth` 1 (CPU runtimes) a batch is one call on the device's compute thread, and the next
batch is taken only once it is done: exactly the queue's behaviour before pipelining, so CPU
serving pays nothing for it. With a larger depth (torch on CUDA) up to `depth` batches are in
flight: the next batch is padded and copied on a host thread while the current one computes,
launched on the compute thread (which only queues kernels), and its rows are waited for on a
collector thread, so neither the event loop nor the compute thread ever waits on the device.
Nothing here knows the device: tests drive it with a backend that simulates device time.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any, Callable, Sequence

import numpy as np

from rescore_sidecar.sidecar.backends import TokenizedSequence
from rescore_sidecar.sidecar.backends.base import Stages
from rescore_sidecar.sidecar.core.profiling import BatchProfiler

# Called on the event loop with the batch's rows (or the exception that failed it) and its seconds
# from the start of its launch to its rows on the host.
OnDone = Callable[[np.ndarray | BaseException, float], None]


class Pipeline:
    """Batches in flight for one model: `acquire` a slot, then `start` a batch in it."""

    def __init__(self, stages: Stages, compute: concurrent.futures.Executor, name: str = "model",
                 profiler: BatchProfiler | None = None) -> None:
        self.stages = stages
        self.profiler = profiler
        self.depth = max(int(getattr(stages, "depth", 1)), 1)
        self._compute = compute
        self._slots = asyncio.Semaphore(self.depth)
        self._tasks: set[asyncio.Task] = set()
        self._pools: list[concurrent.futures.ThreadPoolExecutor] = []
        if self.depth > 1:  # one thread each: prepares and collects stay in launch order
            self._prepare_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"prepare-{name}")
            self._collect_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"collect-{name}")
            self._pools += [self._prepare_pool, self._collect_pool]

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def wait_free(self) -> None:
        """Returns once a slot is free (the batcher takes work only then: as late as it can)."""
        async with self._slots:
            pass

    async def acquire(self) -> None:
        await self._slots.acquire()

    def release(self) -> None:
        """Gives back a slot acquired for a batch that was not started after all."""
        self._slots.release()

    def start(self, sequences: Sequence[TokenizedSequence], on_done: OnDone) -> asyncio.Task:
        """Runs a batch in the slot the caller acquired; the slot is released when it ends."""
        if self.profiler is not None:
            self.profiler.batch_starting()
        task = asyncio.get_running_loop().create_task(self._run(list(sequences), on_done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _whole(self, sequences: list[TokenizedSequence]) -> tuple[np.ndarray, float]:
        stages = self.stages
        started = time.perf_counter()
        rows = stages.collect(stages.launch(stages.prepare(sequences)))
        return rows, time.perf_counter() - started

    def _launch(self, prepared: Any) -> tuple[Any, float]:
        return self.stages.launch(prepared), time.perf_counter()

    async def _run(self, sequences: list[TokenizedSequence], on_done: OnDone) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.depth == 1:
                rows, elapsed = await loop.run_in_executor(self._compute, self._whole, sequences)
            else:
                prepared = await loop.run_in_executor(self._prepare_pool, self.stages.prepare, sequences)
                started = time.perf_counter()
                launched, _ = await loop.run_in_executor(self._compute, self._launch, prepared)
                rows = await loop.run_in_executor(self._collect_pool, self.stages.collect, launched)
                elapsed = time.perf_counter() - started
        except asyncio.CancelledError as exc:  # closing: the batch's requests are told, then it ends
            on_done(exc, 0.0)
            raise
        except Exception as exc:  # noqa: BLE001 - the batch's requests fail, the pipeline keeps serving
            on_done(exc, 0.0)
        else:
            on_done(rows, elapsed)
        finally:
            self._slots.release()
            if self.profiler is not None:
                self.profiler.batch_done()

    async def drain(self) -> None:
        """Waits for every batch in flight."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancels the batches in flight and stops the host threads without waiting for the device
        (a collect blocked on a slow device finishes on its own thread; nothing waits for it)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
        if self.profiler is not None:
            self.profiler.close()
