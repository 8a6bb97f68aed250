"""OpenVINO runtime (CPU): the torch graph exported once to OpenVINO IR and cached on disk.

Precisions: fp32 (inference precision forced to f32, scores match torch fp32), bf16 (the CPU
plugin's bf16 kernels, AMX/AVX512-BF16), int8 (static quantization with NNCF, calibrated on
text; the rest of the graph runs in the plugin's default precision). Artefacts are built once,
by `rescore-sidecar prepare-model` at image build time or by the first start, and reused; replicas
sharing a folder build each once between them (artefacts.obtain).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import pathlib
import threading
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from rescore_sidecar.sidecar.backends import artefacts
from rescore_sidecar.sidecar.backends.base import Backend, Engine
from rescore_sidecar.sidecar.config import ModelSpec

log = logging.getLogger(__name__)

_HINTS = {"fp32": "f32", "bf16": "bf16"}  # int8: the plugin's default for the non-quantized ops
_EXPORT_FORMAT = 2  # bump when _export changes what it writes: older artefacts are then not reused


def default_cache_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "rescore-sidecar" / "models"


def _variant(backend: Backend, spec: ModelSpec) -> str:
    variant = f"{backend.kind}-{'int8' if backend.precision == 'int8' else 'fp32'}"
    if backend.precision == "int8":
        digest = hashlib.sha256(pathlib.Path(spec.calibration_file).read_bytes()).hexdigest()[:12] \
            if spec.calibration_file else "default"  # a new calibration text is a new artefact
        variant += f"-{digest}"
    return variant


def recipe(backend: Backend, spec: ModelSpec) -> artefacts.Recipe:
    """What the artefact is made of: the checkpoint's files, the variant (kind, fp32 IR or int8
    with its calibration text) and the versions that shape the graph."""
    options = {"export": _EXPORT_FORMAT, "uses_type_ids": bool(getattr(backend, "uses_type_ids", False)),
               "openvino": _version("openvino")}
    if backend.precision == "int8":
        options["nncf"] = _version("nncf")
    return artefacts.Recipe(_variant(backend, spec), artefacts.files_fingerprint(spec.source, spec.revision),
                            options, files=("model.xml", "model.bin"))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _cache_parent(spec: ModelSpec, cache_dir: str) -> pathlib.Path:
    source = pathlib.Path(spec.source)
    key = hashlib.sha256(f"{os.path.abspath(spec.source) if source.exists() else spec.source}\n"
                         f"{spec.revision or ''}".encode()).hexdigest()[:16]
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.source.strip("/"))[-60:]
    return pathlib.Path(cache_dir or default_cache_root()) / f"{slug}-{key}"


def artefact_dir(backend: Backend, spec: ModelSpec, cache_dir: str = "") -> pathlib.Path:
    """Where a new artefact is built: `<model dir>/openvino/<variant>-<fingerprint>` when the model
    is a writable local directory, else `<cache dir>/<source>-<hash>/<variant>-<fingerprint>`
    (cache dir: setting model_cache_dir, default ~/.cache/rescore-sidecar/models)."""
    name, source = recipe(backend, spec).name, pathlib.Path(spec.source)
    if not cache_dir and source.is_dir() and os.access(source, os.W_OK):
        return source / "openvino" / name
    return _cache_parent(spec, cache_dir) / name


def artefact_candidates(backend: Backend, spec: ModelSpec, cache_dir: str = "") -> list[pathlib.Path]:
    """Where an existing artefact is looked for, in order: beside a local model even when that
    folder is read-only (baked into an image or on a PVC by prepare-model, then served by a
    non-root user), then where artefact_dir would build it."""
    name, source = recipe(backend, spec).name, pathlib.Path(spec.source)
    beside = [source / "openvino" / name] if source.is_dir() else []
    return list(dict.fromkeys([*beside, artefact_dir(backend, spec, cache_dir)]))


def _export(backend: Backend, spec: ModelSpec, hub_kwargs: Mapping[str, Any]):
    import openvino as ov
    import torch

    from rescore_sidecar.sidecar.backends.torch import output_module

    module = output_module(backend.kind, spec.source, hub_kwargs)
    example = {"input_ids": torch.ones((2, 16), dtype=torch.long),
               "attention_mask": torch.ones((2, 16), dtype=torch.long)}
    if backend.uses_type_ids:
        example["token_type_ids"] = torch.zeros((2, 16), dtype=torch.long)
    with torch.inference_mode():
        model = ov.convert_model(module, example_input=example)
    for port, name in zip(model.inputs, example):
        port.get_tensor().set_names({name})
    model.reshape({name: ov.PartialShape([-1, -1]) for name in example})
    return model


def _quantize(model, calibration: Iterable[Mapping[str, np.ndarray]]):
    import nncf

    items = list(calibration)
    return nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                         preset=nncf.QuantizationPreset.MIXED, subset_size=len(items))


def prepare(backend: Backend, spec: ModelSpec, hub_kwargs: Mapping[str, Any], *, cache_dir: str = "",
            calibration: Callable[[], Iterable[Mapping[str, np.ndarray]]] | None = None) -> pathlib.Path:
    """Finds the IR for the backend's kind and precision, or builds it (one replica builds, the
    others wait for it: see artefacts.obtain); returns model.xml."""
    import openvino as ov

    target, built = artefact_dir(backend, spec, cache_dir), []

    def build(staging: pathlib.Path) -> None:
        built.append(staging)
        log.info("building the OpenVINO %s artefact of %s in %s (once)", backend.precision, spec.source, target)
        model = _export(backend, spec, hub_kwargs)
        if backend.precision == "int8":
            if calibration is None:
                raise ValueError("int8 needs calibration text")
            model = _quantize(model, calibration())
        ov.save_model(model, str(staging / "model.xml"), compress_to_fp16=False)

    folder = artefacts.obtain(recipe(backend, spec), target, build,
                              elsewhere=artefact_candidates(backend, spec, cache_dir),
                              info={"source": spec.source, "revision": spec.revision, "kind": backend.kind,
                                    "precision": backend.precision, "calibration_file": spec.calibration_file})
    if not built:
        log.info("using the OpenVINO %s artefact of %s in %s", backend.precision, spec.source, folder)
    return folder / "model.xml"


def load_engine(backend: Backend, spec: ModelSpec, hub_kwargs: Mapping[str, Any], *, cache_dir: str = "",
                threads: int = 0,
                calibration: Callable[[], Iterable[Mapping[str, np.ndarray]]] | None = None) -> tuple[Engine, str]:
    import openvino as ov

    if backend.precision not in ("fp32", "bf16", "int8"):
        raise ValueError(f"the openvino backend runs fp32, bf16 or int8, not {backend.precision}")
    path = prepare(backend, spec, hub_kwargs, cache_dir=cache_dir, calibration=calibration)
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}  # one stream: the queue runs one batch at a time
    if backend.precision in _HINTS:
        config["INFERENCE_PRECISION_HINT"] = _HINTS[backend.precision]
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    local = threading.local()  # an infer request is not thread-safe; one per calling thread

    def run(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        result = request.infer(dict(inputs), share_inputs=True)
        return np.array(result[0], dtype=np.float32)  # copy: the request reuses its output buffer

    return run, str(path)
