"""A model that does no compute, to measure the sidecar's own cost (benchmarks and tests only).

A runtime (`null`) like torch or OpenVINO: the model is loaded as usual (its real tokenizer,
limits and kind), so tokenization, padding, queueing, batching, caching and the transports all
run as they do in production; only the engine is a cheap deterministic function of the token
ids. It also counts the sequences it was given, so a test can see how many forward passes a
request cost.

`RESCORE_NULL_DELAY_MS` (environment of the sidecar process) makes every forward pass take that
long, for tests that need a known compute time (e.g. eval's latency with the cache bypassed).

Not a user option: only this module registers it. Start a sidecar with it from code:

    with null_sidecar_process({"null": model_dir}) as sidecar: ...

which runs `python -m rescore_sidecar.tools.null_backend SERVE-ARGS...`: the ordinary `serve`
command with the `null` runtime registered, and `backend=null` added to every --model.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from typing import Iterator, Mapping, Sequence

import numpy as np

from rescore_sidecar.sidecar.backends import CROSS_ENCODER, BuiltEngine, EngineRequest, register_runtime
from rescore_sidecar.tools.sidecar_process import SidecarProcess

RUNTIME = "null"
DELAY_ENV = "RESCORE_NULL_DELAY_MS"
EMBEDDING_DIM = 8


@dataclasses.dataclass
class NullEngine:
    """An engine whose forward pass costs next to nothing; counts what it was given."""

    kind: str
    sequences_seen: int = 0
    passes: int = 0
    delay_seconds: float = 0.0  # per forward pass: a known compute time

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        self.passes += 1
        self.sequences_seen += len(ids)
        # A cheap, deterministic function of the unpadded ids: distinct texts get distinct rows.
        sums = ((ids[:, :16] * mask[:, :16]).sum(axis=1) + mask.sum(axis=1)).astype(np.float32)
        if self.kind == CROSS_ENCODER:
            return ((sums % 997) / 997.0).reshape(-1, 1).astype(np.float32)
        rows = np.stack([np.cos(sums * (k + 1)) for k in range(EMBEDDING_DIM)], axis=1).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def build_null_engine(request: EngineRequest) -> BuiltEngine:
    """The `null` runtime: any device and precision setting is ignored (it reports CPU fp32)."""
    delay_ms = float(os.environ.get(DELAY_ENV, "0") or 0)
    return BuiltEngine(NullEngine(request.model.kind, delay_seconds=delay_ms / 1000), device="cpu", precision="fp32")


class NullSidecarProcess(SidecarProcess):
    """A sidecar subprocess serving its models on the null runtime (see the module docstring)."""

    def command(self) -> list[str]:
        cmd = super().command()
        index = cmd.index("rescore_sidecar.tools")
        cmd = cmd[:index] + ["rescore_sidecar.tools.null_backend"] + cmd[index + 2:]  # drop "serve"
        return [f"{arg},backend={RUNTIME}" if previous == "--model" else arg
                for previous, arg in zip(["", *cmd], cmd)]


@contextlib.contextmanager
def null_sidecar_process(models: Mapping[str, str], *, extra_args: Sequence[str] = (),
                         timeout: float = 120.0, **kwargs) -> Iterator[NullSidecarProcess]:
    proc = NullSidecarProcess(models, extra_args=extra_args, **kwargs)
    proc.start(timeout)
    try:
        yield proc
    finally:
        proc.close()


def main(argv: Sequence[str]) -> int:
    """`serve` with the `null` runtime registered (models select it with backend=null)."""
    from rescore_sidecar.sidecar.app import serve_main

    register_runtime(RUNTIME, build_null_engine)
    return serve_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
