"""Runtimes by name: each a factory that builds the engine of a described model.

`torch` and `openvino` are registered here (their modules are imported only when a model uses
them: both are heavy); anything else registers itself with `register_runtime` before models
load (tools/null_backend.py does, for benchmarks). A model's `backend` setting names one.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np

from rescore_sidecar.sidecar.backends.base import Engine, ModelDescription, Stages

if TYPE_CHECKING:
    from rescore_sidecar.sidecar.config import ModelSpec

# Padded model inputs of the int8 calibration text, tokenized as requests are (a caller passes it in:
# tokenizing is the core's job, and the core imports the backends, not the other way round).
CalibrationInputs = Callable[[], Iterable[Mapping[str, np.ndarray]]]

# the global --dtype names -> precisions
_DTYPE_PRECISION = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


@dataclasses.dataclass(frozen=True)
class EngineRequest:
    """What a runtime is given to build one model's engine."""

    model: ModelDescription
    spec: ModelSpec
    hub_kwargs: Mapping[str, Any]  # revision=..., for from_pretrained
    device: str  # the device setting: auto, cpu, cuda, cuda:N
    dtype: str  # the global dtype setting, which precision=auto follows
    cache_dir: str = ""
    threads: int = 0
    calibration: CalibrationInputs | None = None  # needed for int8
    cuda_graphs: str = "auto"  # torch on CUDA: auto (small models), on, off


@dataclasses.dataclass(frozen=True)
class BuiltEngine:
    """What a runtime gives back: the engine and where and how it runs."""

    engine: Engine
    device: Any
    precision: str
    artefact: str = ""  # on-disk compiled/quantized model the engine runs, if any
    staged: Stages | None = None  # the runtime's pipeline stages, when it overlaps batches (torch on CUDA)


RuntimeFactory = Callable[[EngineRequest], BuiltEngine]

_RUNTIMES: dict[str, RuntimeFactory] = {}


def register_runtime(name: str, factory: RuntimeFactory) -> None:
    """Makes `backend=name` build engines with `factory`."""
    if name == "auto":
        raise ValueError("'auto' chooses among the runtimes; it cannot name one")
    _RUNTIMES[name] = factory


def runtime_names() -> tuple[str, ...]:
    return tuple(_RUNTIMES)


def runtime_factory(name: str) -> RuntimeFactory:
    try:
        return _RUNTIMES[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; the runtimes are {', '.join(_RUNTIMES)}") from None


def resolve_precision(spec: ModelSpec, device_type: str, dtype: str) -> str:
    """precision=auto: the global --dtype if set; CUDA: bf16 where supported, else fp16;
    CPU: fp32 (exact scores; bf16 and int8 are opt-in, see docs/backends.md). fp8 is never chosen
    by auto: it is opt-in (backends/fp8.py)."""
    if spec.precision != "auto":
        return spec.precision
    if dtype != "auto":
        return _DTYPE_PRECISION[dtype]
    if device_type == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def _torch(request: EngineRequest) -> BuiltEngine:
    from rescore_sidecar.sidecar.backends import torch as torch_runtime

    device = torch_runtime.resolve_device(request.device)
    precision = resolve_precision(request.spec, device.type, request.dtype)
    engine = torch_runtime.load_engine(request.model.kind, request.spec.source, request.hub_kwargs, device=device,
                                       precision=precision)
    model = request.model
    staged = torch_runtime.cuda_stages(engine, device, pad_id=model.pad_id, uses_type_ids=model.uses_type_ids,
                                       max_length=model.max_length, cuda_graphs=request.cuda_graphs)
    return BuiltEngine(engine, device, precision, staged=staged)


@dataclasses.dataclass(frozen=True)
class _OpenVinoTarget:
    """What the OpenVINO runtime reads of the model it exports (kind, precision, inputs)."""

    kind: str
    precision: str
    uses_type_ids: bool


def _openvino(request: EngineRequest) -> BuiltEngine:
    if request.device not in ("auto", "cpu"):
        raise ValueError(f"the openvino backend runs on the CPU, not on device {request.device!r}")
    if not openvino_available():
        raise ValueError("the openvino package is not installed: pip install 'rescore-sidecar[openvino]'")
    from rescore_sidecar.sidecar.backends import openvino as ov_runtime

    precision = resolve_precision(request.spec, "cpu", request.dtype)
    target = _OpenVinoTarget(request.model.kind, precision, request.model.uses_type_ids)
    engine, artefact = ov_runtime.load_engine(target, request.spec, request.hub_kwargs, cache_dir=request.cache_dir,
                                              threads=request.threads, calibration=request.calibration)
    return BuiltEngine(engine, "cpu", precision, artefact)


register_runtime("torch", _torch)
register_runtime("openvino", _openvino)
