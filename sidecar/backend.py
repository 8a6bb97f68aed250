"""Model backend: loads a Hugging Face checkpoint and runs forward passes.

Two kinds share one interface, so the queue and batching never look at the kind:
- cross-encoder (`AutoModelForSequenceClassification`): one sequence per
  (query, document) pair; a row of the output is the pair's logits.
- bi-encoder (`AutoModel`, sentence-transformers style): one sequence per text;
  a row of the output is the mean-pooled, L2-normalised embedding.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from typing import Sequence

import numpy as np
import torch
from tokenizers import Tokenizer

from rescore_sidecar.sidecar.config import ModelSpec

log = logging.getLogger(__name__)

CROSS_ENCODER = "cross-encoder"
BI_ENCODER = "bi-encoder"


@dataclasses.dataclass
class TokenizedSequence:
    """Token ids of one model input (a pair, or a single text)."""

    ids: list[int]
    type_ids: list[int] | None


@dataclasses.dataclass
class Backend:
    """A loaded model, ready to run batches on its device."""

    name: str
    source: str
    kind: str
    model: torch.nn.Module
    tokenizer: Tokenizer  # the fast tokenizer, truncation and padding switched off
    device: torch.device
    dtype: torch.dtype
    max_length: int
    max_query_tokens: int
    num_labels: int
    pad_id: int
    uses_type_ids: bool

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def pad(self, batch: Sequence[TokenizedSequence]) -> dict[str, torch.Tensor]:
        """Right-pads a batch into model inputs on the backend's device."""
        width = max(len(seq.ids) for seq in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        types = torch.zeros((len(batch), width), dtype=torch.long) if self.uses_type_ids else None
        for row, seq in enumerate(batch):
            n = len(seq.ids)
            ids[row, :n] = torch.tensor(seq.ids, dtype=torch.long)
            mask[row, :n] = 1
            if types is not None and seq.type_ids is not None:
                types[row, :n] = torch.tensor(seq.type_ids, dtype=torch.long)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            inputs["token_type_ids"] = types
        return {key: value.to(self.device, non_blocking=True) for key, value in inputs.items()}

    def forward(self, batch: Sequence[TokenizedSequence]) -> np.ndarray:
        """Runs one padded batch; returns float32 rows (logits or embeddings) as numpy.

        Results leave torch here so that no torch op runs on the event loop thread: a second
        thread calling into torch starts a second OpenMP team, and on a small CPU the two
        teams' spinning threads slow each other down.
        """
        inputs = self.pad(batch)
        with torch.inference_mode():
            if self.kind == CROSS_ENCODER:
                out = self.model(**inputs).logits
            else:
                hidden = self.model(**inputs).last_hidden_state
                mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
        return out.float().cpu().numpy()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    dtype = getattr(torch, name)
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("float16 is not supported on CPU; use float32 or bfloat16")
    return dtype


def _detect_kind(spec: ModelSpec, config) -> str:
    if spec.kind != "auto":
        return spec.kind
    architectures = getattr(config, "architectures", None) or []
    if any(arch.endswith("ForSequenceClassification") for arch in architectures):
        return CROSS_ENCODER
    return BI_ENCODER


def _sentence_transformers_max_length(source: str) -> int | None:
    """max_seq_length of a local sentence-transformers checkpoint, if it declares one."""
    path = pathlib.Path(source) / "sentence_bert_config.json"
    if not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text())["max_seq_length"])
    except (ValueError, KeyError, TypeError):
        return None


def _model_max_length(kind: str, spec: ModelSpec, config, hf_tokenizer) -> int:
    limits = []
    tok_limit = getattr(hf_tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and tok_limit < 1_000_000:
        limits.append(tok_limit)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int):
        # RoBERTa-family models reserve padding_idx + 1 positions.
        offset = getattr(config, "pad_token_id", 0) + 1 if config.model_type in ("roberta", "xlm-roberta") else 0
        limits.append(positions - offset)
    if kind == BI_ENCODER:
        st_limit = _sentence_transformers_max_length(spec.source)
        if st_limit:
            limits.append(st_limit)
    if spec.max_length:
        limits.append(spec.max_length)
    return min(limits) if limits else 512


def load_backend(spec: ModelSpec, *, device: str = "auto", dtype: str = "auto",
                 default_query_tokens: int = 64) -> Backend:
    """Loads `spec` with `from_pretrained` (hub id or local path) onto the chosen device."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # progress bars would flood the server log
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    kwargs = {"revision": spec.revision} if spec.revision else {}
    config = AutoConfig.from_pretrained(spec.source, **kwargs)
    kind = _detect_kind(spec, config)
    hf_tokenizer = AutoTokenizer.from_pretrained(spec.source, **kwargs)
    if not getattr(hf_tokenizer, "is_fast", False):
        raise ValueError(f"model {spec.source!r} has no fast tokenizer; the sidecar needs one")
    model_cls = AutoModelForSequenceClassification if kind == CROSS_ENCODER else AutoModel
    model = model_cls.from_pretrained(spec.source, dtype=torch_dtype, **kwargs)
    model.to(torch_device).eval()

    tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    max_length = _model_max_length(kind, spec, config, hf_tokenizer)
    query_tokens = min(spec.max_query_tokens or default_query_tokens, max_length // 2)
    pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0
    uses_type_ids = "token_type_ids" in hf_tokenizer.model_input_names and getattr(config, "type_vocab_size", 0) > 1
    backend = Backend(
        name=spec.display_name(), source=spec.source, kind=kind, model=model, tokenizer=tokenizer,
        device=torch_device, dtype=torch_dtype, max_length=max_length, max_query_tokens=query_tokens,
        num_labels=int(getattr(config, "num_labels", 1)) if kind == CROSS_ENCODER else 0,
        pad_id=int(pad_id), uses_type_ids=uses_type_ids,
    )
    log.info("loaded model %s (%s) from %s on %s as %s, max_length=%d",
             backend.name, kind, spec.source, torch_device, backend.dtype_name, max_length)
    return backend
