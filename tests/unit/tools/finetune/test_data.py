"""Training data for `finetune`: the held-out split, hard-negative mining, pairs, click preferences."""
from __future__ import annotations

import pytest

from rescore_sidecar.tools.eval.collection import Collection, Document
from rescore_sidecar.tools.finetune.data import (FinetuneError, click_triplets, judged_pairs, judged_triplets,
                                                 mine_negatives, split_queries)


def _collection() -> Collection:
    docs = {d: Document(d, f"title {d}", f"text of {d}") for d in ("a", "b", "c", "d", "e")}
    return Collection("t", docs, {"1": "first query", "2": "second query"},
                      {"1": {"a": 2, "b": 0}, "2": {"c": 1, "d": 3}})


def test_split_is_fixed_by_the_seed_not_by_input_order():
    ids = [str(i) for i in range(1, 101)]
    one = split_queries(ids, 0.4, seed=7)
    assert split_queries(list(reversed(ids)), 0.4, seed=7) == one
    assert len(one.held_out) == 40 and len(one.train) == 60
    assert not set(one.train) & set(one.held_out) and set(one.train) | set(one.held_out) == set(ids)
    assert split_queries(ids, 0.4, seed=8) != one


def test_split_keeps_a_query_on_each_side_and_refuses_bad_shares():
    assert [len(x) for x in (split_queries(["1", "2"], 0.9, 0).train, split_queries(["1", "2"], 0.9, 0).held_out)] == [1, 1]
    for share in (0, 1, 1.5, -0.1):
        with pytest.raises(FinetuneError, match="--held-out"):
            split_queries(["1", "2", "3"], share, 0)
    with pytest.raises(FinetuneError, match="at least 2"):
        split_queries(["1"], 0.5, 0)


def test_mining_excludes_judged_relevant_documents_and_keeps_engine_order():
    judged = {"a": 2, "b": 0, "x": 1}
    assert mine_negatives(["a", "b", "c", "x", "d", "e"], judged, 3) == ["b", "c", "d"]
    assert mine_negatives(["a", "x"], judged, 3) == []


def test_judged_pairs_label_relevant_and_mined_documents():
    c = _collection()
    pairs = judged_pairs(c, ["1", "2"], {"1": ["b", "a", "c", "d"], "2": ["c", "e", "a"]}, negatives=2)
    got = [(p.query, p.document.split()[-1], p.label) for p in pairs]
    assert got == [("first query", "a", 1.0), ("first query", "b", 0.0), ("first query", "c", 0.0),
                   ("second query", "c", 1.0), ("second query", "d", 1.0), ("second query", "e", 0.0),
                   ("second query", "a", 0.0)]
    assert pairs[0].document == c.documents["a"].full_text()


def test_triplets_pair_each_relevant_document_with_each_negative():
    triplets = judged_triplets(_collection(), ["2"], {"2": ["c", "e", "a", "b"]}, negatives=2)
    assert [(t.positive.split()[-1], t.negative.split()[-1]) for t in triplets] == [
        ("c", "e"), ("c", "a"), ("d", "e"), ("d", "a")]


def test_clicks_prefer_the_clicked_document_over_those_skipped_above_it():
    docs = {d: f"text {d}" for d in "abcde"}
    records = [{"query": "q", "doc_ids": ["a", "b", "c", "d"], "clicked": ["c", "a"]},
               {"query": "q2", "doc_ids": ["zz", "e", "b"], "clicked": ["b"]}]  # zz is not in the collection
    got = [(t.query, t.positive[-1], t.negative[-1]) for t in click_triplets(records, docs)]
    assert got == [("q", "c", "b"), ("q2", "b", "e")]
    with pytest.raises(FinetuneError, match="click record 1"):
        click_triplets([{"query": "q", "doc_ids": "a b"}], docs)
