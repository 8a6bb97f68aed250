"""Inference backends: one interface (`Backend`), one module per runtime, chosen by name from a
registry (`register_runtime`), one loader."""
from rescore_sidecar.sidecar.backends.base import (
    BI_ENCODER, CROSS_ENCODER, PRECISIONS, Backend, Engine, ModelDescription, TokenizedSequence)
from rescore_sidecar.sidecar.backends.loader import load_backend
from rescore_sidecar.sidecar.backends.registry import (BuiltEngine, EngineRequest, register_runtime,
                                                       runtime_names)

__all__ = ["BI_ENCODER", "CROSS_ENCODER", "PRECISIONS", "Backend", "BuiltEngine", "Engine", "EngineRequest",
           "ModelDescription", "TokenizedSequence", "load_backend", "register_runtime", "runtime_names"]
