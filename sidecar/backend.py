"""Moved to rescore_sidecar.sidecar.backends (one module per runtime); re-exported for old imports."""
from rescore_sidecar.sidecar.backends import (  # noqa: F401
    BI_ENCODER, CROSS_ENCODER, Backend, TokenizedSequence, load_backend)

__all__ = ["BI_ENCODER", "CROSS_ENCODER", "Backend", "TokenizedSequence", "load_backend"]
