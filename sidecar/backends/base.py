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
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tokenizers import Tokenizer

CROSS_ENCODER = "cross-encoder"
BI_ENCODER = "bi-encoder"

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# precision -> the dtype name ListModels and the metrics have always reported
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}

# Padded int64 arrays: input_ids, attention_mask[, token_type_ids] -> float32 rows.
Engine = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclasses.dataclass
class TokenizedSequence:
    """Token ids of one model input (a pair, or a single text)."""

    ids: list[int]
    type_ids: list[int] | None


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
        width = max(len(seq.ids) for seq in batch)
        ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        types = np.zeros((len(batch), width), dtype=np.int64) if self.uses_type_ids else None
        for row, seq in enumerate(batch):
            n = len(seq.ids)
            ids[row, :n] = seq.ids
            mask[row, :n] = 1
            if types is not None and seq.type_ids is not None:
                types[row, :n] = seq.type_ids
        inputs = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            inputs["token_type_ids"] = types
        return inputs


@dataclasses.dataclass
class Backend(ModelDescription):
    """A loaded model, ready to run batches: its description plus the engine a runtime built."""

    runtime: str  # a registered runtime name: "torch", "openvino", ...
    precision: str  # "fp32", "bf16", "fp16", "int8"
    device: Any  # torch.device for torch, "cpu" for OpenVINO; str(device) names it
    engine: Engine
    artefact: str = ""  # on-disk compiled/quantized model the engine runs, if any

    @classmethod
    def of(cls, model: ModelDescription, *, runtime: str, precision: str, device: Any, engine: Engine,
           artefact: str = "") -> Backend:
        """The backend of a described model, once its runtime has built the engine."""
        described = {field.name: getattr(model, field.name) for field in dataclasses.fields(ModelDescription)}
        return cls(**described, runtime=runtime, precision=precision, device=device, engine=engine,
                   artefact=artefact)

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES[self.precision]

    def forward(self, batch: Sequence[TokenizedSequence]) -> np.ndarray:
        """Runs one padded batch; returns float32 rows (logits or embeddings).

        Results are numpy so that no runtime op runs on the event loop thread: a second
        thread calling into torch starts a second OpenMP team, and on a small CPU the two
        teams' spinning threads slow each other down.
        """
        return np.asarray(self.engine(self.pad(batch)), dtype=np.float32)
