"""The pipelined queue (core/pipeline.py through core/queue.py) on a backend that simulates a device:
prepare takes host time, launch only queues work on a simulated stream (a thread that spends device
time per batch, in launch order), collect waits for the batch's event. No GPU needed: the ordering,
cancellation and shutdown logic is the same for every device."""
import asyncio
import concurrent.futures
import queue
import threading
import time

import numpy as np
import pytest

from rescore_sidecar.sidecar.backends import TokenizedSequence
from rescore_sidecar.sidecar.core.queue import BatchLimits, Job, ModelQueue


class SimulatedDevice:
    """Stages of depth `depth` over a simulated device stream; records what it saw and when."""

    name = "simulated"

    def __init__(self, depth=3, host_s=0.002, device_s=0.02, fail_on=None):
        self.depth, self.host_s, self.device_s, self.fail_on = depth, host_s, device_s, fail_on
        self.stream: queue.Queue = queue.Queue()
        self.launched: list[list[int]] = []  # first id of each row, per batch, in launch order
        self.events: list[tuple[str, int, float]] = []  # (stage, batch number, time)
        self.lock = threading.Lock()
        self.worker = threading.Thread(target=self._device, daemon=True)
        self.worker.start()

    @property
    def stages(self):
        return self

    def _device(self):
        while True:
            work = self.stream.get()
            if work is None:
                return
            number, rows, done, out = work
            self._mark("device-start", number)
            time.sleep(self.device_s)
            out.append(np.array([[float(r)] for r in rows], dtype=np.float32))
            self._mark("device-end", number)
            done.set()

    def _mark(self, stage, number):
        with self.lock:
            self.events.append((stage, number, time.monotonic()))

    def prepare(self, batch):
        time.sleep(self.host_s)
        return [seq.ids[0] for seq in batch]

    def launch(self, rows):
        if self.fail_on is not None and self.fail_on in rows:
            raise RuntimeError("simulated device error")
        with self.lock:
            number = len(self.launched)
            self.launched.append(rows)
        done, out = threading.Event(), []
        self.stream.put((number, rows, done, out))  # queued, not waited for
        return done, out

    def collect(self, launched):
        done, out = launched
        done.wait()
        return out[0]

    def forward(self, batch):
        return self.collect(self.launch(self.prepare(batch)))

    def stop(self):
        self.stream.put(None)


@pytest.fixture
def compute():
    pool = concurrent.futures.ThreadPoolExecutor(1)
    yield pool
    pool.shutdown(wait=False)


def _job(loop, value, count, length=8):
    return Job([TokenizedSequence([value] * length, None) for _ in range(count)], None, loop.create_future())


async def test_rows_reach_their_request_and_batches_overlap_on_the_device(compute):
    device = SimulatedDevice(depth=3)
    queue_ = ModelQueue(device, compute, BatchLimits(max_batch_tokens=64, max_batch_pairs=8, max_wait_ms=1))
    queue_.start()
    loop = asyncio.get_running_loop()
    jobs = [_job(loop, value, count) for value, count in zip(range(1, 21), [3, 17, 1, 8, 9] * 4)]
    for job in jobs:
        queue_.submit(job)
    results = await asyncio.wait_for(asyncio.gather(*(job.future for job in jobs)), 20)
    for value, (job, rows) in enumerate(zip(jobs, results), start=1):
        assert len(rows) == len(job.sequences) and all(row[0] == value for row in rows)
    # pipelined: some batch was launched while an earlier one was still on the device
    starts = {n: t for stage, n, t in device.events if stage == "device-start"}
    ends = {n: t for stage, n, t in device.events if stage == "device-end"}
    gaps = [starts[n + 1] - ends[n] for n in range(len(ends) - 1)]
    assert len(device.launched) > 3 and max(gaps) < device.device_s / 2, gaps  # the device never waited on the host
    await queue_.close()
    device.stop()


async def test_a_cancelled_requests_rows_are_dropped_and_others_complete(compute):
    device = SimulatedDevice(depth=2, device_s=0.05)
    queue_ = ModelQueue(device, compute, BatchLimits(max_batch_tokens=32, max_batch_pairs=4, max_wait_ms=1))
    queue_.start()
    loop = asyncio.get_running_loop()
    doomed, kept = _job(loop, 7, 40), _job(loop, 9, 4)
    queue_.submit(doomed)
    queue_.submit(kept)
    while not device.launched:
        await asyncio.sleep(0.005)
    doomed.release()  # the client went away while its first batch was on the device
    rows = await asyncio.wait_for(kept.future, 10)
    assert [row[0] for row in rows] == [9] * 4
    assert doomed.future.cancelled()
    launched_doomed = sum(row == 7 for batch in device.launched for row in batch)
    assert launched_doomed <= 4 * device.depth  # what was in flight at most, not the 40 rows
    await queue_.close()
    device.stop()


async def test_a_failed_launch_fails_its_batch_only(compute):
    device = SimulatedDevice(depth=2, fail_on=5)
    queue_ = ModelQueue(device, compute, BatchLimits(max_batch_tokens=16, max_batch_pairs=2, max_wait_ms=1))
    queue_.start()
    loop = asyncio.get_running_loop()
    bad, good = _job(loop, 5, 2), _job(loop, 6, 2)
    queue_.submit(bad)
    queue_.submit(good)
    with pytest.raises(RuntimeError, match="simulated device error"):
        await asyncio.wait_for(bad.future, 10)
    assert [row[0] for row in await asyncio.wait_for(good.future, 10)] == [6, 6]
    await queue_.close()
    device.stop()


async def test_the_event_loop_never_waits_on_the_device(compute):
    device = SimulatedDevice(depth=3, device_s=0.2)
    queue_ = ModelQueue(device, compute, BatchLimits(max_batch_tokens=16, max_batch_pairs=2, max_wait_ms=1))
    queue_.start()
    loop = asyncio.get_running_loop()
    job = _job(loop, 3, 8)
    queue_.submit(job)
    lags = []
    while not job.future.done():
        before = time.monotonic()
        await asyncio.sleep(0.005)
        lags.append(time.monotonic() - before - 0.005)
    assert len(lags) > 20 and max(lags) < 0.1, max(lags)  # a device wait would show as a 0.2 s lag
    await queue_.close()
    device.stop()


async def test_close_with_batches_on_a_slow_device_does_not_hang(compute):
    device = SimulatedDevice(depth=3, device_s=1.0)
    queue_ = ModelQueue(device, compute, BatchLimits(max_batch_tokens=16, max_batch_pairs=2, max_wait_ms=1))
    queue_.start()
    loop = asyncio.get_running_loop()
    jobs = [_job(loop, v, 6) for v in (1, 2, 3)]
    for job in jobs:
        queue_.submit(job)
    while not device.launched:
        await asyncio.sleep(0.005)
    started = time.monotonic()
    await asyncio.wait_for(queue_.close(), 0.5)  # does not wait for the 1 s device batches
    assert time.monotonic() - started < 0.5
    assert all(job.future.done() for job in jobs)  # every waiter is released (cancelled)
    device.stop()


async def test_depth_one_runs_each_batch_whole_before_taking_the_next(compute):
    """CPU runtimes: no overlap, the batcher takes work only once the device is free (as before)."""
    device = SimulatedDevice(depth=1, device_s=0.02)
    queue_ = ModelQueue(device, compute, BatchLimits(max_batch_tokens=16, max_batch_pairs=2, max_wait_ms=1))
    queue_.start()
    loop = asyncio.get_running_loop()
    job = _job(loop, 4, 8)
    queue_.submit(job)
    await asyncio.wait_for(job.future, 10)
    starts = sorted(t for stage, _, t in device.events if stage == "device-start")
    ends = sorted(t for stage, _, t in device.events if stage == "device-end")
    assert all(start >= end for start, end in zip(starts[1:], ends[:-1]))  # never two on the device
    await queue_.close()
    device.stop()
