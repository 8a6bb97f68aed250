"""Fixtures shared by every test directory: small seeded models built on disk once per run."""
from __future__ import annotations

import pathlib

import pytest

from rescore_sidecar.tools.seeded_models import build_model


# Each folder's tests carry its marker, so `-m "not integration and not deploy"` is the fast set
# wherever a test file lives and whether or not it remembered its own `pytestmark`.
_FOLDER_MARKS = {"integration": pytest.mark.integration, "deploy": pytest.mark.deploy}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for part in item.path.parts:
            if part in _FOLDER_MARKS:
                item.add_marker(_FOLDER_MARKS[part])


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_cross_encoder(models_dir) -> pathlib.Path:
    """Single-logit BERT cross-encoder, random weights (seed 0), real MiniLM tokenizer."""
    return build_model(models_dir / "tiny-ce", kind="cross-encoder", arch="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_two_label_cross_encoder(models_dir) -> pathlib.Path:
    return build_model(models_dir / "tiny-ce2", kind="cross-encoder", arch="tiny", num_labels=2, seed=1)


@pytest.fixture(scope="session")
def tiny_bi_encoder(models_dir) -> pathlib.Path:
    return build_model(models_dir / "tiny-bi", kind="bi-encoder", arch="tiny", seed=2)


@pytest.fixture(scope="session")
def short_cross_encoder(models_dir) -> pathlib.Path:
    """Cross-encoder whose tokenizer caps pairs at 64 tokens, to exercise truncation cheaply."""
    return build_model(models_dir / "tiny-ce-64", kind="cross-encoder", arch="tiny", seed=3, max_length=64)


@pytest.fixture(scope="session")
def tiny_xlmr_cross_encoder(models_dir) -> pathlib.Path:
    """XLM-R-type cross-encoder (type_vocab_size 1) with an XLM-R tokenizer that emits no segment ids."""
    return build_model(models_dir / "tiny-xlmr-ce", kind="cross-encoder", arch="tiny-xlmr", seed=4)
