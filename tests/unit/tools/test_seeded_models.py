"""Seeded XLM-R-type models behave like the real ones: one segment id, and a tokenizer that emits none."""
import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from rescore_sidecar.sidecar.backends import load_backend
from rescore_sidecar.sidecar.config import ModelSpec
from rescore_sidecar.sidecar.core.tokenization import tokenize_request

QUERY = "Supersonic wing flutter"
DOCS = ["The boundary-layer of a cone at Mach 5", "heat transfer", "buckling of thin cylindrical shells " * 20]


def test_xlmr_tokenizer_emits_no_segment_ids_and_fits_the_model(tiny_xlmr_cross_encoder):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_xlmr_cross_encoder))
    config = AutoConfig.from_pretrained(str(tiny_xlmr_cross_encoder))
    encoded = tokenizer(QUERY, DOCS[0])
    assert "token_type_ids" not in encoded
    ids = encoded["input_ids"]
    # XLM-R's layout: <s> A </s></s> B </s>, pad id 1, every id inside the embedding table
    assert ids[0] == tokenizer.bos_token_id == 0 and ids[-1] == tokenizer.eos_token_id == 2
    assert [tokenizer.eos_token_id] * 2 == [t for t in ids[1:-1] if t == 2]
    assert tokenizer.unk_token_id not in ids
    assert config.type_vocab_size == 1 and config.pad_token_id == tokenizer.pad_token_id == 1
    assert max(ids) < config.vocab_size == len(tokenizer)


def test_sidecar_sends_no_segment_ids_and_matches_a_direct_forward(tiny_xlmr_cross_encoder):
    backend = load_backend(ModelSpec(source=str(tiny_xlmr_cross_encoder), backend="torch", precision="fp32"),
                           device="cpu")
    assert not backend.uses_type_ids
    sequences = tokenize_request(backend, QUERY, DOCS).sequences
    assert "token_type_ids" not in backend.pad(sequences)
    got = backend.forward(sequences)

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_xlmr_cross_encoder))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_xlmr_cross_encoder)).eval()
    with torch.inference_mode():
        expected = np.stack([model(**tokenizer(QUERY, doc, truncation="only_second", max_length=512,
                                               return_tensors="pt")).logits[0].numpy() for doc in DOCS])
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
