"""Running several sidecar calls at once: threads for the sync client, the event loop for the
asyncio one (`rerank_many`). With `channels.Channels`/`AsyncChannels`, the only code the two
clients do not share (the sync client is generated from the async one: scripts/unasync.py)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from typing import Awaitable, Callable, Sequence, TypeVar

T = TypeVar("T")
_MAX_THREADS = 64  # an msearch of more searches queues the rest (each still under the shared budget)


def run_all(functions: Sequence[Callable[[], T]]) -> list[T]:
    """Calls each function in its own thread (gRPC's sync channels are thread-safe), in a copy of the
    caller's context (its current trace span, so each call is its child); their results in order."""
    if not functions:
        return []
    calls = [(contextvars.copy_context(), function) for function in functions]
    with concurrent.futures.ThreadPoolExecutor(min(len(functions), _MAX_THREADS), "rescore-rerank-many") as pool:
        return list(pool.map(lambda call: call[0].run(call[1]), calls))


async def run_all_async(functions: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Awaits each function's coroutine concurrently; their results in order."""
    return list(await asyncio.gather(*(function() for function in functions)))
