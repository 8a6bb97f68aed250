"""The batching loop with a recording backend (the model boundary faked; the queue is real)."""
import asyncio
import random
import time

import pytest
import numpy as np

from rescore_sidecar.sidecar.backends import TokenizedSequence
from rescore_sidecar.sidecar.core.queue import BatchLimits, Job, ModelQueue, plan_batches
from rescore_sidecar.sidecar.core.errors import LimitExceeded


def test_plan_batches_respects_budget_and_sorts_by_length():
    rng = random.Random(0)
    lengths = [rng.randint(1, 300) for _ in range(500)]
    groups = plan_batches(lengths, max_tokens=2048, max_pairs=32)
    assert sorted(i for g in groups for i in g) == list(range(500))
    for group in groups:
        widths = [lengths[i] for i in group]
        assert widths == sorted(widths)
        assert len(group) <= 32 and max(widths) * len(group) <= 2048
    assert plan_batches([5000], max_tokens=100, max_pairs=4) == [[0]]  # over-long item alone


class RecordingBackend:
    """Returns each sequence's first id as its output row; records batch shapes."""

    name = "recording"

    def __init__(self, delay: float = 0.0):
        self.batches: list[list[int]] = []
        self.delay = delay

    def forward(self, batch):
        self.batches.append([len(seq.ids) for seq in batch])
        time.sleep(self.delay)
        return np.array([[float(seq.ids[0])] for seq in batch], dtype=np.float32)


def _job(loop, values, lengths, deadline=None):
    seqs = [TokenizedSequence([v] * n, None) for v, n in zip(values, lengths)]
    return Job(seqs, deadline, loop.create_future())


@pytest.fixture
def executor():
    import concurrent.futures
    pool = concurrent.futures.ThreadPoolExecutor(1)
    yield pool
    pool.shutdown()


async def test_concurrent_jobs_share_batches_and_get_their_own_rows(executor):
    backend = RecordingBackend()
    queue = ModelQueue(backend, executor, BatchLimits(max_batch_tokens=4096, max_batch_pairs=64, max_wait_ms=20))
    queue.start()
    loop = asyncio.get_running_loop()
    rng = random.Random(1)
    jobs = []
    for j in range(20):
        n = rng.randint(1, 12)
        jobs.append(_job(loop, [j * 100 + k for k in range(n)], [rng.randint(1, 60) for _ in range(n)]))
    for job in jobs:
        queue.submit(job)
    results = await asyncio.gather(*(job.future for job in jobs))
    await queue.close()
    for j, rows in enumerate(results):
        assert [int(r.item()) for r in rows] == [j * 100 + k for k in range(len(rows))]
    assert len(backend.batches) < len(jobs)  # work of several requests went into one pass
    for widths in backend.batches:
        assert widths == sorted(widths) and max(widths) * len(widths) <= 4096 and len(widths) <= 64


async def test_expired_and_abandoned_jobs_are_dropped_before_compute(executor):
    backend = RecordingBackend(delay=0.05)
    queue = ModelQueue(backend, executor, BatchLimits(max_batch_tokens=8, max_batch_pairs=1, max_wait_ms=0))
    queue.start()
    loop = asyncio.get_running_loop()
    live = _job(loop, [1, 2], [3, 3])
    expired = _job(loop, [7, 7, 7], [5, 5, 5], deadline=time.monotonic() + 0.01)
    abandoned = _job(loop, [9, 9], [4, 4])
    for job in (live, expired, abandoned):
        queue.submit(job)
    abandoned.abandoned = True
    await asyncio.wait_for(live.future, 5)
    await asyncio.sleep(0.3)
    await queue.close()
    assert sum(len(b) for b in backend.batches) == 2  # only the live job's sequences ran
    assert not expired.future.done()


def test_queue_full_is_resource_exhausted(executor):
    loop = asyncio.new_event_loop()
    try:
        queue = ModelQueue(RecordingBackend(), executor, BatchLimits(max_queue_pairs=5))
        queue.submit(_job(loop, [1, 2, 3], [1, 1, 1]))
        with pytest.raises(LimitExceeded, match="queued"):
            queue.submit(_job(loop, [4, 5, 6], [1, 1, 1]))
        assert queue.depth == 3
        with pytest.raises(LimitExceeded, match="the limit is 5"):  # never fits: a request error
            queue.submit(_job(loop, list(range(6)), [1] * 6))
    finally:
        loop.close()


async def test_a_failing_forward_fails_only_its_requests_and_the_loop_survives(executor):
    class Flaky(RecordingBackend):
        def forward(self, batch):
            if any(seq.ids[0] == 666 for seq in batch):
                raise RuntimeError("boom")
            return super().forward(batch)

    queue = ModelQueue(Flaky(), executor, BatchLimits(max_batch_pairs=1, max_wait_ms=0))
    queue.start()
    loop = asyncio.get_running_loop()
    bad, good = _job(loop, [666], [2]), _job(loop, [5], [2])
    queue.submit(bad)
    queue.submit(good)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(bad.future, 5)
    assert [r.item() for r in await asyncio.wait_for(good.future, 5)] == [5.0]
    await queue.close()


def test_batch_token_budget_defaults_by_device_type():
    import torch

    from rescore_sidecar.sidecar.config import SidecarConfig
    from rescore_sidecar.sidecar.core.queue import default_batch_tokens

    assert default_batch_tokens("cpu") == default_batch_tokens(torch.device("cpu")) == 16384  # CPU unchanged
    assert default_batch_tokens(torch.device("cuda", 1)) == default_batch_tokens("cuda:0") == 65536
    assert default_batch_tokens("xpu") == 16384  # a device type without its own figure gets CPU's
    assert SidecarConfig().max_batch_tokens is None  # unset: the device decides
    assert SidecarConfig(max_batch_tokens=4096).max_batch_tokens == 4096
