"""profile_dir (core/profiling.py) through the real pipeline on CPU torch: the window skips the first
batches, records the compute thread's ops (not only the event loop's), and writes its two files."""
import asyncio
import concurrent.futures
import json

import numpy as np
import torch

from rescore_sidecar.sidecar.backends import TokenizedSequence
from rescore_sidecar.sidecar.backends.base import EagerStages
from rescore_sidecar.sidecar.core.pipeline import Pipeline
from rescore_sidecar.sidecar.core.profiling import BatchProfiler, ProfileSpec


def linear_stages():
    layer = torch.nn.Linear(16, 1)

    def forward(batch):
        with torch.inference_mode():
            x = torch.tensor([seq.ids for seq in batch], dtype=torch.float32)
            return layer(x).numpy()

    return EagerStages(forward)


async def run_batches(pipeline: Pipeline, count: int) -> list[np.ndarray]:
    rows = []
    for n in range(count):
        done = asyncio.get_running_loop().create_future()
        await pipeline.acquire()
        pipeline.start([TokenizedSequence([n] * 16, None), TokenizedSequence([n + 1] * 16, None)],
                       lambda out, _s, done=done: done.set_result(out))
        rows.append(await done)
    return rows


def test_the_window_records_the_compute_thread_and_writes_a_trace_and_an_op_table(tmp_path):
    async def main():
        compute = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="compute")
        profiler = BatchProfiler(ProfileSpec(tmp_path / "prof", batches=3, skip=2), "ce")
        pipeline = Pipeline(linear_stages(), compute, "ce", profiler)
        await run_batches(pipeline, 2)
        assert not profiler.active  # opens as the 3rd batch starts
        await run_batches(pipeline, 3)
        assert not profiler.active and profiler.written is not None
        files = await profiler.written
        await run_batches(pipeline, 3)  # one window only: later batches are not recorded
        assert not profiler.active
        await pipeline.close()
        compute.shutdown()
        return files

    trace, ops = asyncio.run(main())
    assert (trace.name, ops.name) == ("ce.trace.json", "ce.ops.txt")
    table = ops.read_text()
    assert table.startswith("model ce: 3 batches in")
    assert "aten::addmm" in table or "aten::linear" in table  # ran on the compute thread, not the loop's
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("name") in ("aten::addmm", "aten::linear") for e in events)


def test_a_window_cut_short_by_shutdown_still_writes_what_it_recorded(tmp_path):
    async def main():
        compute = concurrent.futures.ThreadPoolExecutor(1)
        profiler = BatchProfiler(ProfileSpec(tmp_path, batches=50, skip=0), "bi")
        pipeline = Pipeline(linear_stages(), compute, "bi", profiler)
        await run_batches(pipeline, 2)
        assert profiler.active
        await pipeline.close()
        files = await profiler.written
        compute.shutdown()
        return files

    _, ops = asyncio.run(main())
    assert ops.read_text().startswith("model bi: 2 batches in")



def test_two_models_take_turns_with_the_one_process_profiler(tmp_path):
    async def main():
        compute = concurrent.futures.ThreadPoolExecutor(1)
        first = BatchProfiler(ProfileSpec(tmp_path, batches=2, skip=0), "a")
        second = BatchProfiler(ProfileSpec(tmp_path, batches=1, skip=0), "b")
        a, b = Pipeline(linear_stages(), compute, "a", first), Pipeline(linear_stages(), compute, "b", second)
        await run_batches(a, 1)
        await run_batches(b, 1)
        assert first.active and not second.active  # b waits for a's window
        await run_batches(a, 1)
        await first.written
        await run_batches(b, 1)
        files = await second.written
        await a.close()
        await b.close()
        compute.shutdown()
        return files

    _, ops = asyncio.run(main())
    assert ops.read_text().startswith("model b: 1 batches in")
