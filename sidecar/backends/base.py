"""The one interface the queue and batching talk to (the text-embeddings-inference shape).

A `Backend` is a loaded model: its `ModelDescription` (what the tokenizer and the queue need
to know: name, kind, limits, padding) plus an `Engine`, the runtime-specific part that turns a
padded batch into output rows, built by the runtime the registry (registry.py) names. Runtimes (torch, OpenVINO, ...) differ only in the engine,
so the queue never looks at the runtime, and the two model kinds never look at it either:
- cross-encoder: one sequence per (query, document) pair; a row is the pair's logits.
- bi-encoder: one sequence per text; a row is the mean-pooled, L2-normalised embedding.
Every engine returns exactly those rows (pooling is part of the engine's graph).
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
from tokenizers import Tokenizer

CROSS_ENCODER = "cross-encoder"
BI_ENCODER = "bi-encoder"

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "fp8")
# precision -> the dtype name ListModels and the metrics have always reported
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8", "fp8": "float8_e4m3fn"}

# Padded int64 arrays: input_ids, attention_mask[, token_type_ids] -> float32 rows.
Engine = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclasses.dataclass
class TokenizedSequence:
    """Token ids of one model input (a pair, or a single text)."""

    ids: list[int]
    type_ids: list[int] | None


PadTarget = Callable[[int, int], Mapping[str, np.ndarray]]  # (rows, width) -> int64 arrays to fill


def pad_batch(batch: Sequence[TokenizedSequence], pad_id: int, uses_type_ids: bool, *, width: int = 0,
              rows: int = 0, out: PadTarget | None = None) -> dict[str, np.ndarray]:
    """Right-pads a batch into int64 input_ids, attention_mask[, token_type_ids].

    Vectorised: the ids of all rows go through one `np.fromiter` and one masked assignment, so
    there is no per-sequence numpy call (the Python loop per row cost more than the padding).
    `width`/`rows` pad further (shape buckets; extra rows get one unmasked pad token so no row is
    all-masked); `out` gives the arrays to fill (a runtime's reusable pinned buffers).
    """
    lengths = np.fromiter((len(seq.ids) for seq in batch), dtype=np.int64, count=len(batch))
    width = max(width, int(lengths.max()))
    rows = max(rows, len(batch))
    if out is None:
        arrays = {"input_ids": np.empty((rows, width), np.int64), "attention_mask": np.empty((rows, width), np.int64)}
        if uses_type_ids:
            arrays["token_type_ids"] = np.empty((rows, width), np.int64)
    else:
        arrays = dict(out(rows, width))
    total = int(lengths.sum())
    filled = np.arange(width) < lengths[:, None]  # row-major, so it takes the flat ids in order
    ids, mask = arrays["input_ids"], arrays["attention_mask"]
    ids.fill(pad_id)
    ids[:len(batch)][filled] = np.fromiter(itertools.chain.from_iterable(seq.ids for seq in batch), np.int64, total)
    mask[:len(batch)] = filled
    mask[len(batch):] = 0
    mask[len(batch):, 0] = 1
    types = arrays.get("token_type_ids") if uses_type_ids else None
    if types is not None:
        types.fill(0)
        if any(seq.type_ids is not None for seq in batch):
            types[:len(batch)][filled] = np.fromiter(itertools.chain.from_iterable(
                seq.type_ids if seq.type_ids is not None else [0] * len(seq.ids) for seq in batch), np.int64, total)
    else:
        arrays.pop("token_type_ids", None)
    return arrays


class Stages(Protocol):
    """One forward pass cut in three, so that the queue can overlap batches (core/pipeline.py).

    prepare: host work (padding, the host-to-device copy issued); any thread, may run while the
    previous batch computes. launch: queues the computation; on the device's compute thread, in
    order; must not wait for the device. collect: waits for the rows and returns them as float32
    numpy. `depth` is how many batches may be between prepare and collect at once: 1 = no overlap
    (CPU runtimes, where the forward pass is synchronous and the three run as one call).
    """

    depth: int

    def prepare(self, batch: Sequence[TokenizedSequence]) -> Any: ...

    def launch(self, prepared: Any) -> Any: ...

    def collect(self, launched: Any) -> np.ndarray: ...


@dataclasses.dataclass
class ModelDescription:
    """A model as the tokenizer and the queue see it, before any runtime is chosen: what a runtime
    needs to know to build an engine, and what tokenizes the int8 calibration text."""

    name: str
    source: str
    kind: str
    tokenizer: Tokenizer  # the fast tokenizer, truncation and padding switched off
    max_length: int
    max_query_tokens: int
    num_labels: int
    pad_id: int
    uses_type_ids: bool

    def pad(self, batch: Sequence[TokenizedSequence]) -> dict[str, np.ndarray]:
        """Right-pads a batch into int64 model inputs."""
        return pad_batch(batch, self.pad_id, self.uses_type_ids)


@dataclasses.dataclass
class Backend(ModelDescription):
    """A loaded model, ready to run batches: its description plus the engine a runtime built."""

    runtime: str  # a registered runtime name: "torch", "openvino", ...
    precision: str  # "fp32", "bf16", "fp16", "int8"
    device: Any  # torch.device for torch, "cpu" for OpenVINO; str(device) names it
    engine: Engine
    artefact: str = ""  # on-disk compiled/quantized model the engine runs, if any
    staged: Stages | None = None  # the runtime's own pipeline stages (torch on CUDA); else one eager call

    @classmethod
    def of(cls, model: ModelDescription, *, runtime: str, precision: str, device: Any, engine: Engine,
           artefact: str = "", staged: Stages | None = None) -> Backend:
        """The backend of a described model, once its runtime has built the engine."""
        described = {field.name: getattr(model, field.name) for field in dataclasses.fields(ModelDescription)}
        return cls(**described, runtime=runtime, precision=precision, device=device, engine=engine,
                   artefact=artefact, staged=staged)

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES[self.precision]

    def forward(self, batch: Sequence[TokenizedSequence]) -> np.ndarray:
        """Runs one padded batch; returns float32 rows (logits or embeddings).

        Results are numpy so that no runtime op runs on the event loop thread: a second
        thread calling into torch starts a second OpenMP team, and on a small CPU the two
        teams' spinning threads slow each other down.
        """
        if self.staged is not None:
            return self.staged.collect(self.staged.launch(self.staged.prepare(batch)))
        return np.asarray(self.engine(self.pad(batch)), dtype=np.float32)

    @property
    def stages(self) -> Stages:
        """The pipeline stages the queue runs: the runtime's own, else `forward` as one stage."""
        return self.staged if self.staged is not None else EagerStages(self.forward)


@dataclasses.dataclass(frozen=True)
class EagerStages:
    """Any synchronous `forward(batch) -> rows` as pipeline stages of depth 1 (no overlap)."""

    forward: Callable[[Sequence[TokenizedSequence]], np.ndarray]
    depth: int = 1

    def prepare(self, batch: Sequence[TokenizedSequence]) -> Sequence[TokenizedSequence]:
        return batch

    def launch(self, prepared: Sequence[TokenizedSequence]) -> np.ndarray:
        return self.forward(prepared)

    def collect(self, launched: np.ndarray) -> np.ndarray:
        return launched
