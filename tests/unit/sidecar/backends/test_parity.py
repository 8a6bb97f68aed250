"""Every backend/precision against the torch fp32 forward pass of the same checkpoint.

Tolerances per precision: fp32 within 1e-4 (absolute, on logits and embedding components);
bf16 and int8 rank agreement, measured as the Spearman correlation of one query's scores over
40 documents on the pretrained all-MiniLM-L6-v2 bi-encoder (random-weight cross-encoders score
every document almost alike, so their ranks are noise: on them bf16/int8 get an absolute bound).
"""
import random

import numpy as np
import pytest
from scipy.stats import spearmanr

from rescore_sidecar.sidecar.backends import BI_ENCODER, CROSS_ENCODER, load_backend
from rescore_sidecar.sidecar.config import ModelSpec
from rescore_sidecar.sidecar.core.calibration import calibration_inputs
from rescore_sidecar.sidecar.core.tokenization import tokenize_request
from rescore_sidecar.tools.seeded_models import minilm_dir

WORDS = ("boundary layer flow wing pressure supersonic heat transfer shock wave drag lift panel buckling "
         "cylinder laminar turbulent jet nozzle slender body hypersonic viscous").split()
QUERY = "supersonic wing flutter"


def _docs(count=40, seed=1):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 120))) for _ in range(count)]


def _load(source, backend, precision, cache):
    return load_backend(ModelSpec(source=str(source), backend=backend, precision=precision), device="cpu",
                        calibrate=calibration_inputs,
                        cache_dir=str(cache))


def _rows_one_by_one(backend, sequences):
    """Reference: each sequence alone, so no padding can hide a masking bug."""
    return np.concatenate([backend.forward([seq]) for seq in sequences])


def _rows_batched(backend, sequences):
    """As the queue runs them: length-sorted, padded batches of 8."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i].ids))
    out = np.zeros((len(sequences), backend.forward(sequences[:1]).shape[1]), dtype=np.float32)
    for start in range(0, len(order), 8):
        chunk = order[start:start + 8]
        out[chunk] = backend.forward([sequences[i] for i in chunk])
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("artefacts")


@pytest.mark.parametrize("model", ["tiny_cross_encoder", "tiny_two_label_cross_encoder", "tiny_bi_encoder"])
@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_fp32_matches_torch_fp32_within_1e4(request, model, backend, cache):
    source = request.getfixturevalue(model)
    reference = _load(source, "torch", "fp32", cache)
    candidate = _load(source, backend, "fp32", cache)
    assert (candidate.runtime, candidate.precision, candidate.dtype_name) == (backend, "fp32", "float32")
    sequences = tokenize_request(reference, QUERY, _docs()).sequences
    expected = _rows_one_by_one(reference, sequences)
    got = _rows_batched(candidate, sequences)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("backend,precision,bound", [("torch", "bf16", 5e-3), ("openvino", "bf16", 5e-3),
                                                     ("openvino", "int8", 2e-2)])
def test_reduced_precision_cross_encoder_stays_close(tiny_cross_encoder, backend, precision, bound, cache):
    reference = _load(tiny_cross_encoder, "torch", "fp32", cache)
    candidate = _load(tiny_cross_encoder, backend, precision, cache)
    assert candidate.kind == CROSS_ENCODER and candidate.precision == precision
    sequences = tokenize_request(reference, QUERY, _docs()).sequences
    diff = np.abs(_rows_batched(candidate, sequences) - _rows_one_by_one(reference, sequences))
    assert diff.max() < bound


@pytest.mark.parametrize("backend,precision,min_rho", [("torch", "bf16", 0.99), ("openvino", "bf16", 0.99),
                                                       ("openvino", "int8", 0.97)])
def test_reduced_precision_keeps_the_ranking_of_pretrained_minilm(backend, precision, min_rho, cache):
    reference = _load(minilm_dir(), "torch", "fp32", cache)
    candidate = _load(minilm_dir(), backend, precision, cache)
    assert candidate.kind == BI_ENCODER
    sequences = tokenize_request(reference, QUERY, _docs()).sequences
    expected = _rows_one_by_one(reference, sequences)
    got = _rows_batched(candidate, sequences)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)  # still normalised
    rho = spearmanr(expected[1:] @ expected[0], got[1:] @ got[0]).statistic
    assert rho >= min_rho, f"{backend}/{precision}: Spearman {rho:.3f} with torch fp32"
