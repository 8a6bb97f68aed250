"""The int8 calibration inputs: the calibration text tokenized exactly as requests are.

Passed to `backends.load_backend(calibrate=...)` by whoever loads models for serving (app.py,
prepare-model): tokenizing is the core's job, and the core imports the backends, never the reverse.
"""
from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import numpy as np

from rescore_sidecar.sidecar.backends.base import ModelDescription
from rescore_sidecar.sidecar.core.tokenization import tokenize_request


def calibration_inputs(model: ModelDescription, pairs: Sequence[tuple[str, str]]) -> Iterator[Mapping[str, np.ndarray]]:
    """Padded model inputs, one (query, document) sequence each."""
    for query, document in pairs:
        for sequence in tokenize_request(model, query, [document]).sequences:
            yield model.pad([sequence])
