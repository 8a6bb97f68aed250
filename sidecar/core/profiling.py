"""Where a model's serving time goes: torch.profiler over one window of its batches (opt-in).

Issue 26 asks to measure, on the GPU, whether kernel launches starve behind the other Python
threads (tokenization, gRPC, response building). The profiler starts as a batch starts once `skip`
batches have finished (start-up and warm-up traffic left out), and stops after `batches` more have
finished, on the event loop thread both times (torch's profiler must stop where it started).
Every thread is recorded where torch offers it (`profile_all_threads`, torch 2.7+), so the
prepare, compute and collect threads and the CUDA kernels appear on one timeline. Two files per
model: `<model>.trace.json` (open it in Perfetto or chrome://tracing) and `<model>.ops.txt` (the
op table by self device time, or self CPU time without CUDA). Profiling slows serving: never time
a run that profiles.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import pathlib
import time
from typing import Any

log = logging.getLogger("rescore_sidecar.profile")


@dataclasses.dataclass(frozen=True)
class ProfileSpec:
    directory: pathlib.Path
    batches: int = 20  # batches finished while the window is open
    skip: int = 10  # batches finished before it opens


class BatchProfiler:
    """Counts a model's finished batches and profiles the window [skip, skip + batches)."""

    # torch's profiler is one per process: with several models, one window at a time (the next
    # model's window opens at its first batch after the running one closed)
    running: BatchProfiler | None = None

    def __init__(self, spec: ProfileSpec, name: str) -> None:
        self.spec = spec
        self.name = name
        self.finished = 0
        self.written: asyncio.Future | None = None  # set once the window closed: resolves to the files
        self._profiler: Any = None
        self._opened = 0.0
        self._first = 0  # finished batches when the window opened

    @property
    def active(self) -> bool:
        return self._profiler is not None

    def batch_starting(self) -> None:
        """Called on the event loop as each batch of the model starts: opens the window once `skip`
        batches have finished."""
        if self.finished >= self.spec.skip and self.written is None and BatchProfiler.running is None:
            self._open()

    def batch_done(self) -> None:
        """Called on the event loop after each batch of the model (failed ones included)."""
        self.finished += 1
        if self.active and self.finished - self._first >= self.spec.batches:
            self._close()

    def _open(self) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        try:
            from torch._C._profiler import _ExperimentalConfig

            every_thread = {"experimental_config": _ExperimentalConfig(profile_all_threads=True)}
        except (ImportError, TypeError):  # older torch: the event loop thread and the threads it spawns only
            every_thread = {}
        self._profiler = profile(activities=activities, record_shapes=True, **every_thread)
        self._profiler.start()
        BatchProfiler.running = self
        self._opened = time.perf_counter()
        self._first = self.finished
        log.info("profiling model %r: %d batches after the first %d", self.name, self.spec.batches, self.finished)

    def _close(self) -> None:
        profiler, self._profiler = self._profiler, None
        profiler.stop()
        BatchProfiler.running = None
        seconds = time.perf_counter() - self._opened
        batches = self.finished - self._first
        # writing a trace takes seconds: off the event loop
        self.written = asyncio.get_running_loop().run_in_executor(None, self._write, profiler, batches, seconds)

    def _write(self, profiler: Any, batches: int, seconds: float) -> list[pathlib.Path]:
        import torch

        directory = self.spec.directory
        directory.mkdir(parents=True, exist_ok=True)
        trace, ops = directory / f"{self.name}.trace.json", directory / f"{self.name}.ops.txt"
        profiler.export_chrome_trace(str(trace))
        on_device = torch.cuda.is_available()
        sort = "self_cuda_time_total" if on_device else "self_cpu_time_total"
        table = profiler.key_averages().table(sort_by=sort, row_limit=40)
        ops.write_text(f"model {self.name}: {batches} batches in {seconds:.3f} s wall (profiled; slower than "
                       f"unprofiled), sorted by {sort}\n\n{table}\n")
        log.info("profile of model %r written: %s, %s", self.name, trace, ops)
        return [trace, ops]

    def close(self) -> None:
        """Stops a window still open (shutdown before it filled): what it recorded is still written."""
        if self.active:
            self._close()
