"""A model that does no compute, to measure the sidecar's own cost (benchmarks and tests only).

It has the loaded model's interface (`forward(batch) -> np.ndarray` and the attributes the
serving path reads) and uses the model directory's real tokenizer, so tokenization, queueing,
batching, caching and the gRPC layer all run as they do in production; only the forward pass
is replaced by a cheap deterministic function of the token ids. It also counts the sequences
it was given, so a test can see how many forward passes a request cost.

Not a user option: no setting selects it. Start a sidecar with it from code:

    with null_sidecar_process({"null": model_dir}) as sidecar: ...

which runs `python -m rescore_sidecar.tools.null_backend SERVE-ARGS...` (the ordinary `serve`
command with the model loader swapped in this process only).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import sys
from typing import Iterator, Mapping, Sequence

import numpy as np

from rescore_sidecar.tools.sidecar_process import SidecarProcess

CROSS_ENCODER = "cross-encoder"
BI_ENCODER = "bi-encoder"
EMBEDDING_DIM = 8


@dataclasses.dataclass
class NullModel:
    """A loaded model whose forward pass costs next to nothing."""

    name: str
    source: str
    kind: str
    tokenizer: object
    max_length: int
    max_query_tokens: int
    num_labels: int
    pad_id: int = 0
    uses_type_ids: bool = True
    dtype_name: str = "float32"
    device: str = "cpu"
    runtime: str = "null"
    precision: str = "float32"
    sequences_seen: int = 0
    passes: int = 0

    def forward(self, batch: Sequence) -> np.ndarray:
        self.passes += 1
        self.sequences_seen += len(batch)
        # A cheap, deterministic function of the ids: distinct texts get distinct rows.
        sums = np.array([sum(seq.ids[:16]) + len(seq.ids) for seq in batch], dtype=np.float32)
        if self.kind == CROSS_ENCODER:
            return ((sums % 997) / 997.0).reshape(-1, 1).astype(np.float32)
        rows = np.stack([np.cos(sums * (k + 1)) for k in range(EMBEDDING_DIM)], axis=1).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def load_null_model(spec, *, default_query_tokens: int = 64, **_runtime_options) -> NullModel:
    """Called like the real loader (device, dtype, ... are ignored): reads only tokenizer.json and
    config.json of `spec.source`."""
    from tokenizers import Tokenizer

    source = pathlib.Path(spec.source)
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    config = json.loads((source / "config.json").read_text()) if (source / "config.json").is_file() else {}
    kind = spec.kind
    if kind == "auto":
        archs = config.get("architectures") or []
        kind = CROSS_ENCODER if any(a.endswith("ForSequenceClassification") for a in archs) else BI_ENCODER
    max_length = spec.max_length or min(int(config.get("max_position_embeddings", 512)), 512)
    return NullModel(name=spec.display_name(), source=str(source), kind=kind, tokenizer=tokenizer,
                     max_length=max_length,
                     max_query_tokens=min(spec.max_query_tokens or default_query_tokens, max_length // 2),
                     num_labels=1 if kind == CROSS_ENCODER else 0)


class NullSidecarProcess(SidecarProcess):
    """A sidecar subprocess serving NullModels (see the module docstring)."""

    def command(self) -> list[str]:
        cmd = super().command()
        index = cmd.index("rescore_sidecar.tools")
        return cmd[:index] + ["rescore_sidecar.tools.null_backend"] + cmd[index + 2:]  # drop "serve"


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
    from rescore_sidecar.sidecar import app as server

    server.load_backend = load_null_model  # this process only
    return server.serve_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
