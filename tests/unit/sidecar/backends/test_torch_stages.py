"""torch's pipeline stages on CPU (the CUDA streams, pinned memory and graphs need a GPU): shape buckets
pad more but score the same, buffers are reused, and what needs CUDA says so at start."""
import random

import numpy as np
import pytest
import torch

from rescore_sidecar.sidecar.backends import load_backend
from rescore_sidecar.sidecar.backends.torch import cuda_graphs_wanted, cuda_stages
from rescore_sidecar.sidecar.backends.torch_stages import ShapePolicy, TorchStages, round_up
from rescore_sidecar.sidecar.config import ModelSpec
from rescore_sidecar.sidecar.core.tokenization import tokenize_request

WORDS = "boundary layer flow wing pressure supersonic heat transfer shock wave drag lift panel".split()


def _docs(count, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 90))) for _ in range(count)]


def test_round_up_and_bucketed_shapes():
    assert [round_up(n, (32, 64, 128)) for n in (1, 32, 33, 128, 129)] == [32, 32, 64, 128, 129]
    policy = ShapePolicy.bucketed(max_length=300)
    assert policy.widths[-1] == 300 and all(w < 300 for w in policy.widths[:-1])
    assert policy.shape(3, 40) == (4, 64) and policy.shape(200, 301) == (200, 301)  # above every bucket: exact
    assert ShapePolicy().shape(3, 40) == (3, 40)  # no buckets: exact shapes
    shapes = policy.shapes(max_tokens=4096)
    assert shapes and all(r * w <= 4096 for r, w in shapes)
    assert [r * w for r, w in shapes] == sorted((r * w for r, w in shapes), reverse=True)


@pytest.mark.parametrize("model", ["tiny_cross_encoder", "tiny_xlmr_cross_encoder"])
def test_bucketed_stages_score_as_the_eager_engine(request, model):
    backend = load_backend(ModelSpec(source=str(request.getfixturevalue(model)), backend="torch", precision="fp32"),
                           device="cpu")
    assert backend.staged is None  # CPU serving keeps the eager one-call engine
    stages = TorchStages(backend.engine.module, torch.device("cpu"), pad_id=backend.pad_id,
                         uses_type_ids=backend.uses_type_ids, shapes=ShapePolicy.bucketed(backend.max_length))
    assert stages.depth == 1
    sequences = tokenize_request(backend, "supersonic wing", _docs(23)).sequences
    for start in range(0, 23, 5):  # more batches than buffers: they are handed back and reused
        batch = sequences[start:start + 5]
        prepared = stages.prepare(batch)
        rows, width = prepared.inputs["input_ids"].shape
        assert (rows, width) == stages.shapes.shape(len(batch), max(len(s.ids) for s in batch))
        assert width > max(len(s.ids) for s in batch) or width in stages.shapes.widths
        got = stages.collect(stages.launch(prepared))
        np.testing.assert_allclose(got, backend.forward(batch), atol=1e-5, rtol=0)
    assert stages._free.qsize() == 2  # every buffer back


def test_cuda_only_features_refuse_cpu(tiny_cross_encoder):
    backend = load_backend(ModelSpec(source=str(tiny_cross_encoder), backend="torch", precision="fp32"), device="cpu")
    module, cpu = backend.engine.module, torch.device("cpu")
    assert not cuda_graphs_wanted("auto", module, cpu)
    with pytest.raises(ValueError, match="cuda_graphs=on needs a CUDA device"):
        cuda_graphs_wanted("on", module, cpu)
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        TorchStages(module, cpu, pad_id=0, uses_type_ids=True, shapes=ShapePolicy.bucketed(512), graphs=True)
    assert cuda_stages(backend.engine, cpu, pad_id=0, uses_type_ids=True, max_length=512) is None
    with pytest.raises(ValueError, match="cannot be loaded.*cuda_graphs=on needs a CUDA device"):
        load_backend(ModelSpec(source=str(tiny_cross_encoder), backend="torch", precision="fp32"), device="cpu",
                     cuda_graphs="on")


@pytest.mark.parametrize("model", ["tiny_cross_encoder", "tiny_xlmr_cross_encoder", "tiny_bi_encoder"])
def test_dense_masks_score_as_the_models_own_masking(request, model):
    """CUDA's launch gives sdpa a 4D boolean mask (no device sync); same rows as the 2D mask."""
    from rescore_sidecar.sidecar.backends.torch import enable_dense_mask

    backend = load_backend(ModelSpec(source=str(request.getfixturevalue(model)), backend="torch", precision="fp32"),
                           device="cpu")
    sequences = tokenize_request(backend, "supersonic wing", _docs(9, seed=3)).sequences
    expected = backend.forward(sequences)
    assert enable_dense_mask(backend.engine.module)  # these models attend with sdpa
    np.testing.assert_allclose(backend.forward(sequences), expected, atol=1e-5, rtol=0)
