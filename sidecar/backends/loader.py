"""Loads a model for any runtime: describes it (tokenizer, max_length, kind detection), resolves
backend `auto`, has the registered runtime build its engine, and builds the Backend whole."""
from __future__ import annotations

import json
import logging
import pathlib
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from tokenizers import Tokenizer

from rescore_sidecar.sidecar.backends.base import BI_ENCODER, CROSS_ENCODER, Backend, ModelDescription
from rescore_sidecar.sidecar.backends.registry import EngineRequest, openvino_available, runtime_factory
from rescore_sidecar.sidecar.config import ModelSpec

log = logging.getLogger(__name__)


def detect_kind(spec: ModelSpec, config) -> str:
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


def model_max_length(kind: str, spec: ModelSpec, config, hf_tokenizer) -> int:
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


def resolve_runtime(spec: ModelSpec, device: str) -> str:
    """backend=auto: torch on CUDA, OpenVINO on CPU when installed (faster at every
    precision in bench/sidecar_throughput.py), else torch."""
    if spec.backend != "auto":
        return spec.backend
    if device.startswith("cuda"):
        return "torch"
    if device == "auto":
        import torch

        if torch.cuda.is_available():
            return "torch"
    return "openvino" if openvino_available() else "torch"


def describe_model(spec: ModelSpec, *, default_query_tokens: int = 64) -> tuple[ModelDescription, dict[str, Any]]:
    """The model's description from its config and fast tokenizer (no weights loaded), and the
    from_pretrained keywords (revision) its runtime loads the weights with."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # progress bars would flood the server log
    hub_kwargs: dict[str, Any] = {"revision": spec.revision} if spec.revision else {}
    config = AutoConfig.from_pretrained(spec.source, **hub_kwargs)
    kind = detect_kind(spec, config)
    hf_tokenizer = AutoTokenizer.from_pretrained(spec.source, **hub_kwargs)
    if not getattr(hf_tokenizer, "is_fast", False):
        raise ValueError(f"model {spec.source!r} has no fast tokenizer; the sidecar needs one")
    tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    max_length = model_max_length(kind, spec, config, hf_tokenizer)
    pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0
    model = ModelDescription(
        name=spec.display_name(), source=spec.source, kind=kind, tokenizer=tokenizer,
        max_length=max_length, max_query_tokens=min(spec.max_query_tokens or default_query_tokens, max_length // 2),
        num_labels=int(getattr(config, "num_labels", 1)) if kind == CROSS_ENCODER else 0,
        pad_id=int(pad_id),
        uses_type_ids="token_type_ids" in hf_tokenizer.model_input_names and getattr(config, "type_vocab_size", 0) > 1)
    return model, hub_kwargs


# Turns a model's description and (query, document) pairs into padded inputs, one sequence each,
# tokenized as requests are: core.calibration.calibration_inputs.
Calibrate = Callable[[ModelDescription, Sequence[tuple[str, str]]], Iterable[Mapping[str, np.ndarray]]]


def load_backend(spec: ModelSpec, *, device: str = "auto", dtype: str = "auto", default_query_tokens: int = 64,
                 cache_dir: str = "", threads: int = 0, calibrate: Calibrate | None = None,
                 cuda_graphs: str = "auto") -> Backend:
    """Loads `spec` (hub id or local path) on the runtime and precision it resolves to.

    `calibrate` tokenizes the int8 calibration text (spec.calibration_file, else the shipped
    sample); only int8 needs it. Any failure (an architecture a runtime cannot export, a precision
    it does not run, an unknown backend) raises ValueError naming the model and the backend, so
    the server fails at start.
    """
    model, hub_kwargs = describe_model(spec, default_query_tokens=default_query_tokens)
    runtime = resolve_runtime(spec, device)
    calibration = (lambda: calibrate(model, read_calibration(spec.calibration_file))) if calibrate else None
    request = EngineRequest(model, spec, hub_kwargs, device=device, dtype=dtype, cache_dir=cache_dir, threads=threads,
                            calibration=calibration, cuda_graphs=cuda_graphs)
    try:
        built = runtime_factory(runtime)(request)
    except Exception as exc:  # noqa: BLE001 - any runtime failure becomes one start-up error
        raise ValueError(f"model {model.name!r} ({spec.source}) cannot be loaded on backend={runtime}"
                         f" precision={spec.precision}: {exc}") from exc
    backend = Backend.of(model, runtime=runtime, precision=built.precision, device=built.device, engine=built.engine,
                         artefact=built.artefact, staged=built.staged)
    log.info("loaded model %s (%s) from %s on %s/%s as %s, max_length=%d%s",
             backend.name, backend.kind, spec.source, runtime, backend.device, backend.precision, backend.max_length,
             f", artefact {backend.artefact}" if backend.artefact else "")
    return backend


DEFAULT_CALIBRATION = pathlib.Path(__file__).with_name("calibration.tsv")


def read_calibration(path: str | pathlib.Path = "") -> list[tuple[str, str]]:
    """(query, document) pairs: one `query<TAB>document` per line; a line without a tab is a
    document, paired with the query of the line before (or with itself when there is none)."""
    file = pathlib.Path(path) if path else DEFAULT_CALIBRATION
    try:
        lines = [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise ValueError(f"cannot read calibration file {file}: {exc}") from exc
    pairs, query = [], ""
    for line in lines:
        head, sep, tail = line.partition("\t")
        if sep:
            query = head.strip()
            pairs.append((query, tail.strip()))
        else:
            pairs.append((query or line.strip(), line.strip()))
    if not pairs:
        raise ValueError(f"calibration file {file} holds no text")
    return pairs
