"""Token-level truncation against the Hugging Face tokenizer's own pair encoding."""
import pytest
from transformers import AutoTokenizer

from rescore_sidecar.sidecar.backends import load_backend
from rescore_sidecar.sidecar.config import ModelSpec
from rescore_sidecar.sidecar.core.tokenization import tokenize_request


@pytest.fixture(scope="module")
def short_backend(short_cross_encoder):
    return load_backend(ModelSpec(source=str(short_cross_encoder)), device="cpu", default_query_tokens=16)


def test_pairs_match_hf_only_second_truncation(short_backend, short_cross_encoder):
    hf = AutoTokenizer.from_pretrained(str(short_cross_encoder))
    query = "pressure distribution on a slender wing"
    docs = ["short text", "word " * 200, "", "ünïcödé — 漢字 \x00 \u200b emoji 🚀 " * 20]
    out = tokenize_request(short_backend, query, docs)
    assert out.truncated == [False, True, False, True]
    assert not out.query_truncated
    for doc, seq in zip(docs, out.sequences):
        if not doc:
            # HF encodes text_pair="" as a single sequence; we keep the pair shape the model was
            # trained on: [CLS] query [SEP] [SEP].
            single = hf(query)["input_ids"]
            assert seq.ids == single + [hf.sep_token_id]
            continue
        ref = hf(query, doc, truncation="only_second", max_length=64)
        assert seq.ids == ref["input_ids"]
        assert seq.type_ids == ref["token_type_ids"]
        assert len(seq.ids) <= 64


def test_long_query_is_capped_to_its_budget_and_documents_keep_room(short_backend):
    out = tokenize_request(short_backend, "lift " * 100, ["drag " * 100])
    assert out.query_truncated
    (seq,) = out.sequences
    assert len(seq.ids) == 64
    assert seq.type_ids.count(0) == 16 + 2  # [CLS] + 16 query tokens + [SEP]


def test_request_budget_can_only_lower_the_server_budget(short_backend):
    assert tokenize_request(short_backend, "lift " * 10, ["d"], max_query_tokens=4).query_truncated
    assert not tokenize_request(short_backend, "lift " * 10, ["d"], max_query_tokens=1000).query_truncated


def test_max_document_tokens_caps_each_document_below_the_model_limit(short_backend, short_cross_encoder):
    hf = AutoTokenizer.from_pretrained(str(short_cross_encoder))
    query, docs = "wing flutter", ["drag " * 100, "lift"]
    out = tokenize_request(short_backend, query, docs, max_document_tokens=5)
    assert out.truncated == [True, False]
    query_ids = hf(query, add_special_tokens=False)["input_ids"]
    first, second = out.sequences
    assert len(first.ids) == len(query_ids) + 5 + 3  # [CLS] q [SEP] 5 document tokens [SEP]
    assert second.ids == hf(query, "lift")["input_ids"]
    # A cap above what fits changes nothing: the model's limit still rules.
    assert tokenize_request(short_backend, query, docs, max_document_tokens=10_000).sequences == \
        tokenize_request(short_backend, query, docs).sequences
