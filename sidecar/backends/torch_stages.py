"""torch's pipeline stages (base.Stages): what the queue overlaps on CUDA, plus shape buckets and CUDA graphs.

prepare (a host thread): pads the batch straight into one of a few reusable pinned host buffers and
issues the host-to-device copy on a side stream, recording an event. launch (the compute thread):
makes the compute stream wait for that event, queues the forward pass (a CUDA graph replay for a
bucketed shape, else eager), queues the device-to-host copy of the rows into pinned memory and
records a done event; it never synchronises. collect (a collector thread): waits for the done
event, hands the buffers back and returns the rows. The same class runs on CPU (no streams, no
pinned memory: launch computes synchronously) so its padding and bucketing are tested without a GPU;
the CPU runtime itself does not use it (backends/torch.py), so CPU serving is unchanged.
"""
from __future__ import annotations

import bisect
import dataclasses
import logging
import queue
from typing import Any, Sequence

import numpy as np
import torch

from rescore_sidecar.sidecar.backends.base import TokenizedSequence, pad_batch

log = logging.getLogger(__name__)

# Padded lengths and row counts a bucketed batch is rounded up to: few shapes, so each has a graph.
WIDTH_BUCKETS = (32, 64, 128, 192, 256, 384, 512)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
GRAPH_MAX_TOKENS = 65536  # shapes above this run eager (the CUDA batch budget's default)
GRAPH_MAX_PARAMETERS = 200_000_000  # cuda_graphs=auto: MiniLM/base-size models, where launches dominate


def round_up(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= n, or n itself when it is above them all."""
    at = bisect.bisect_left(buckets, n)
    return buckets[at] if at < len(buckets) else n


@dataclasses.dataclass(frozen=True)
class ShapePolicy:
    """How a batch's (rows, width) is padded: exact (no buckets) or rounded up to buckets."""

    widths: tuple[int, ...] = ()
    rows: tuple[int, ...] = ()

    @classmethod
    def bucketed(cls, max_length: int, max_rows: int = ROW_BUCKETS[-1]) -> ShapePolicy:
        widths = tuple(w for w in WIDTH_BUCKETS if w < max_length) + (max_length,)
        return cls(widths, tuple(r for r in ROW_BUCKETS if r <= max_rows))

    def shape(self, rows: int, width: int) -> tuple[int, int]:
        return (round_up(rows, self.rows) if self.rows else rows,
                round_up(width, self.widths) if self.widths else width)

    def shapes(self, max_tokens: int) -> list[tuple[int, int]]:
        """Every bucketed shape within `max_tokens`, largest first (the order graphs are captured in)."""
        return sorted(((r, w) for r in self.rows for w in self.widths if r * w <= max_tokens), reverse=True,
                      key=lambda shape: shape[0] * shape[1])


class _Buffers:
    """One batch's host input buffers: flat int64 tensors (pinned on CUDA) that grow when needed."""

    def __init__(self, names: Sequence[str], pin: bool) -> None:
        self.names, self.pin = tuple(names), pin
        self.flat: dict[str, torch.Tensor] = {}
        self.shape = (0, 0)

    def views(self, rows: int, width: int) -> dict[str, np.ndarray]:
        need = rows * width
        for name in self.names:
            if name not in self.flat or self.flat[name].numel() < need:
                self.flat[name] = torch.empty(max(need, 4096), dtype=torch.int64, pin_memory=self.pin)
        self.shape = (rows, width)
        return {name: self.flat[name][:need].view(rows, width).numpy() for name in self.names}

    def tensors(self) -> dict[str, torch.Tensor]:
        rows, width = self.shape
        return {name: self.flat[name][:rows * width].view(rows, width) for name in self.names}


@dataclasses.dataclass
class _Prepared:
    inputs: dict[str, torch.Tensor]
    copied: Any  # torch.cuda.Event on CUDA, None on CPU
    buffers: _Buffers
    count: int


@dataclasses.dataclass
class _Launched:
    rows: Any  # pinned float32 tensor (CUDA) or numpy rows (CPU)
    done: Any
    buffers: _Buffers
    count: int


class CudaGraphs:
    """One captured forward pass per bucketed shape, sharing one memory pool; replayed in order."""

    def __init__(self, module: torch.nn.Module, device: torch.device, stream, names: Sequence[str],
                 shapes: Sequence[tuple[int, int]], pad_id: int) -> None:
        self.graphs: dict[tuple[int, int], tuple[Any, dict[str, torch.Tensor], torch.Tensor]] = {}
        pool = torch.cuda.graph_pool_handle()
        for rows, width in shapes:
            static = {name: torch.zeros((rows, width), dtype=torch.int64, device=device) for name in names}
            static["input_ids"].fill_(pad_id)
            static["attention_mask"][:, : max(width // 2, 1)] = 1  # padded rows: the mask is really used
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(2):  # warm-up outside the graph (lazy inits, kernel choices)
                    module(**static)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool, stream=stream):
                    out = module(**static).float()
            self.graphs[(rows, width)] = (graph, static, out)
        torch.cuda.synchronize(device)

    def run(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Replays the graph of the inputs' shape on the current stream; None when there is none.
        The output is the graph's static tensor: copy it before the next replay (launch does)."""
        entry = self.graphs.get(tuple(inputs["input_ids"].shape))
        if entry is None:
            return None
        graph, static, out = entry
        for name, tensor in static.items():
            tensor.copy_(inputs[name], non_blocking=True)
        graph.replay()
        return out


class TorchStages:
    """prepare / launch / collect for a torch module on `device` (see the module docstring)."""

    def __init__(self, module: torch.nn.Module, device: torch.device, *, pad_id: int, uses_type_ids: bool,
                 shapes: ShapePolicy = ShapePolicy(), depth: int = 3, graphs: bool = False) -> None:
        self.module, self.device, self.pad_id, self.uses_type_ids = module, device, pad_id, uses_type_ids
        self.shapes = shapes
        self.cuda = device.type == "cuda"
        self.depth = depth if self.cuda else 1
        self.names = ("input_ids", "attention_mask") + (("token_type_ids",) if uses_type_ids else ())
        self._free: queue.Queue[_Buffers] = queue.Queue()
        for _ in range(self.depth + 1):  # one per batch in flight, and one being filled
            self._free.put(_Buffers(self.names, pin=self.cuda))
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self.copy_stream = torch.cuda.Stream(device) if self.cuda else None
        self.graphs: CudaGraphs | None = None
        if graphs:
            if not self.cuda or not shapes.widths:
                raise ValueError("CUDA graphs need a CUDA device and shape buckets")
            self.graphs = CudaGraphs(module, device, self.stream, self.names, shapes.shapes(GRAPH_MAX_TOKENS), pad_id)
            log.info("captured %d CUDA graphs (rows x width up to %d tokens)", len(self.graphs.graphs),
                     GRAPH_MAX_TOKENS)

    def prepare(self, batch: Sequence[TokenizedSequence]) -> _Prepared:
        rows, width = self.shapes.shape(len(batch), max(len(seq.ids) for seq in batch))
        buffers = self._free.get()
        try:
            pad_batch(batch, self.pad_id, self.uses_type_ids, width=width, rows=rows, out=buffers.views)
            host = buffers.tensors()
            if not self.cuda:
                return _Prepared(host, None, buffers, len(batch))
            with torch.cuda.stream(self.copy_stream):
                inputs = {name: tensor.to(self.device, non_blocking=True) for name, tensor in host.items()}
                copied = torch.cuda.Event()
                copied.record(self.copy_stream)
            return _Prepared(inputs, copied, buffers, len(batch))
        except BaseException:
            self._free.put(buffers)  # a failed batch must not keep a buffer: prepare would block
            raise

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.graphs.run(inputs) if self.graphs is not None else None
        return out if out is not None else self.module(**inputs).float()

    def launch(self, prepared: _Prepared) -> _Launched:
        try:
            return self._launch(prepared)
        except BaseException:
            if prepared.copied is not None:
                prepared.copied.synchronize()  # the copy may still read the buffer
            self._free.put(prepared.buffers)
            raise

    def _launch(self, prepared: _Prepared) -> _Launched:
        with torch.inference_mode():
            if not self.cuda:
                rows = self._forward(prepared.inputs).numpy()
                return _Launched(rows, None, prepared.buffers, prepared.count)
            with torch.cuda.stream(self.stream):
                self.stream.wait_event(prepared.copied)
                for tensor in prepared.inputs.values():  # made on the copy stream, freed after this one's use
                    tensor.record_stream(self.stream)
                out = self._forward(prepared.inputs)
                rows = torch.empty(out.shape, dtype=torch.float32, pin_memory=True)
                rows.copy_(out, non_blocking=True)
                done = torch.cuda.Event()
                done.record(self.stream)
        return _Launched(rows, done, prepared.buffers, prepared.count)

    def collect(self, launched: _Launched) -> np.ndarray:
        try:
            if launched.done is not None:
                launched.done.synchronize()  # on the collector thread: no one else waits
                return launched.rows[:launched.count].numpy().copy()
            return np.ascontiguousarray(launched.rows[:launched.count], dtype=np.float32)
        finally:
            self._free.put(launched.buffers)  # its copy finished before the forward pass began

    def forward(self, batch: Sequence[TokenizedSequence]) -> np.ndarray:
        return self.collect(self.launch(self.prepare(batch)))
