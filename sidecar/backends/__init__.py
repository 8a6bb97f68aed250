"""Inference backends: one interface (`Backend`), one module per runtime, one loader."""
from rescore_sidecar.sidecar.backends.base import (
    BI_ENCODER, CROSS_ENCODER, PRECISIONS, RUNTIMES, Backend, Engine, TokenizedSequence)
from rescore_sidecar.sidecar.backends.loader import load_backend

__all__ = ["BI_ENCODER", "CROSS_ENCODER", "PRECISIONS", "RUNTIMES", "Backend", "Engine", "TokenizedSequence",
           "load_backend"]
