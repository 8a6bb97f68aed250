"""rerank_many's concurrency: every call at once, results in order (threads and asyncio alike)."""
from __future__ import annotations

import asyncio
import threading

from rescore_sidecar.connectors._sidecar.concurrency import run_all, run_all_async


def test_threads_run_together_and_keep_order():
    n = 5
    barrier = threading.Barrier(n, timeout=5)  # breaks (an error, not a hang) unless all run at once

    def make(i: int):
        def function() -> int:
            barrier.wait()
            return i * i
        return function

    assert run_all([make(i) for i in range(n)]) == [0, 1, 4, 9, 16]
    assert run_all([]) == []


def test_asyncio_runs_together_and_keeps_order():
    async def main() -> list[int]:
        started = asyncio.Event()
        count = 0

        def make(i: int):
            async def function() -> int:
                nonlocal count
                count += 1
                if count == 3:
                    started.set()
                await asyncio.wait_for(started.wait(), 5)
                return -i
            return function

        return await run_all_async([make(i) for i in range(3)])

    assert asyncio.run(main()) == [0, -1, -2]
