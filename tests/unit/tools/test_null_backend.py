"""The null runtime: registered by name like torch and OpenVINO, loaded through the ordinary loader,
and selected by backend=null on the command line of its subprocess."""
from __future__ import annotations

import numpy as np
import pytest

from rescore_sidecar.sidecar.backends import load_backend, register_runtime, runtime_names
from rescore_sidecar.sidecar.config import ModelSpec
from rescore_sidecar.sidecar.core.tokenization import tokenize_request
from rescore_sidecar.tools.null_backend import RUNTIME, NullSidecarProcess, build_null_engine


@pytest.fixture
def null_runtime():
    register_runtime(RUNTIME, build_null_engine)
    assert RUNTIME in runtime_names()


def test_a_model_loads_on_the_null_runtime_with_its_real_tokenizer(null_runtime, tiny_cross_encoder, tiny_bi_encoder):
    cross = load_backend(ModelSpec(source=str(tiny_cross_encoder), name="ce", backend=RUNTIME), device="cpu")
    assert (cross.runtime, cross.kind, cross.dtype_name, str(cross.device)) == ("null", "cross-encoder", "float32", "cpu")
    sequences = tokenize_request(cross, "wing flutter", ["panel flutter", "jet noise", "panel flutter"]).sequences
    rows = cross.forward(sequences)
    assert rows.shape == (3, 1) and rows[0, 0] == rows[2, 0] != rows[1, 0]  # a function of the ids
    assert np.array_equal(cross.forward(sequences[:1]), rows[:1])  # padding does not change a row
    assert (cross.engine.passes, cross.engine.sequences_seen) == (2, 4)
    bi = load_backend(ModelSpec(source=str(tiny_bi_encoder), backend=RUNTIME), device="cpu")
    embeddings = bi.forward(tokenize_request(bi, "q", ["a document"]).sequences)
    assert bi.kind == "bi-encoder" and np.allclose(np.linalg.norm(embeddings, axis=1), 1.0)


def test_the_subprocess_selects_the_null_runtime_for_every_model(tmp_path):
    command = NullSidecarProcess({"a": "/models/a", "b": "/models/b"}).command()
    assert command[command.index("-m") + 1] == "rescore_sidecar.tools.null_backend" and "serve" not in command
    models = [command[i + 1] for i, arg in enumerate(command) if arg == "--model"]
    assert models == ["a=/models/a,backend=null", "b=/models/b,backend=null"]


def test_a_delay_makes_every_forward_pass_take_that_long(monkeypatch):
    import time

    from rescore_sidecar.tools.null_backend import DELAY_ENV

    class Model:
        kind = "cross-encoder"

    class Request:
        model = Model()

    monkeypatch.setenv(DELAY_ENV, "60")
    engine = build_null_engine(Request()).engine
    inputs = {"input_ids": np.ones((2, 4), dtype=np.int64), "attention_mask": np.ones((2, 4), dtype=np.int64)}
    started = time.perf_counter()
    engine(inputs)
    assert time.perf_counter() - started >= 0.06
