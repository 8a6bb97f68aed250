"""Training data from the user's own collection, engine and click log: pure functions, no I/O.

A fine-tuning run needs, per training query, the documents a model should rank high (judged
relevant) and the ones it should rank below them. The best negatives are the engine's own top
hits that were not judged relevant ("hard negatives": exactly the mistakes BM25 makes and the
reranker has to undo); random documents teach almost nothing.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Iterable, Mapping, Sequence

from rescore_sidecar.tools.eval.collection import Collection


class FinetuneError(ValueError):
    """Bad input for a fine-tuning run: the message says what and where; raised before training."""


@dataclasses.dataclass(frozen=True)
class Split:
    """Query ids for training and for the held-out evaluation, fixed by the seed."""
    train: tuple[str, ...]
    held_out: tuple[str, ...]


def split_queries(query_ids: Sequence[str], held_out: float, seed: int) -> Split:
    """Shuffles the ids with `seed` and holds out a share of them (at least one on each side).

    The order of `query_ids` does not matter: they are sorted first, so the same collection and
    seed always give the same split (the eval of the held-out part is reproducible).
    """
    if not 0.0 < held_out < 1.0:
        raise FinetuneError(f"--held-out must be between 0 and 1 (a share of the queries), got {held_out}")
    ids = sorted(set(query_ids), key=lambda q: (len(q), q))
    if len(ids) < 2:
        raise FinetuneError(f"need at least 2 judged queries to train and hold some out, got {len(ids)}")
    random.Random(seed).shuffle(ids)
    n_held = min(len(ids) - 1, max(1, round(len(ids) * held_out)))
    return Split(train=tuple(ids[n_held:]), held_out=tuple(ids[:n_held]))


def mine_negatives(ranked: Sequence[str], judged: Mapping[str, int], count: int) -> list[str]:
    """The first `count` engine hits that are not judged relevant (gain > 0), in engine order.

    Hits judged not relevant (gain <= 0) are the best negatives there are; unjudged hits are
    assumed not relevant, as every TREC-style evaluation does.
    """
    return [doc for doc in ranked if judged.get(doc, 0) <= 0][:count]


@dataclasses.dataclass(frozen=True)
class Pair:
    """One labelled (query, document) pair: label 1.0 relevant, 0.0 not."""
    query: str
    document: str
    label: float


@dataclasses.dataclass(frozen=True)
class Triplet:
    """(query, better document, worse document): what a margin loss learns from."""
    query: str
    positive: str
    negative: str


def judged_pairs(collection: Collection, query_ids: Iterable[str], ranked: Mapping[str, Sequence[str]],
                 negatives: int) -> list[Pair]:
    """Per query: every relevant document (label 1) and `negatives` mined negatives (label 0) per query.

    `ranked[query_id]` is the engine's ranking for that query. Pairs come in query order, positives first.
    """
    pairs: list[Pair] = []
    for q in query_ids:
        judged = collection.qrels.get(q, {})
        text = collection.queries[q]
        positives = [d for d, gain in judged.items() if gain > 0]
        pairs += [Pair(text, collection.documents[d].full_text(), 1.0) for d in positives]
        pairs += [Pair(text, collection.documents[d].full_text(), 0.0)
                  for d in mine_negatives(ranked.get(q, ()), judged, negatives)]
    return pairs


def judged_triplets(collection: Collection, query_ids: Iterable[str], ranked: Mapping[str, Sequence[str]],
                    negatives: int) -> list[Triplet]:
    """Each relevant document against each of the query's mined negatives (for distillation)."""
    triplets: list[Triplet] = []
    for q in query_ids:
        judged = collection.qrels.get(q, {})
        text = collection.queries[q]
        mined = mine_negatives(ranked.get(q, ()), judged, negatives)
        for d in (d for d, gain in judged.items() if gain > 0):
            triplets += [Triplet(text, collection.documents[d].full_text(), collection.documents[n].full_text())
                         for n in mined]
    return triplets


def click_triplets(records: Iterable[Mapping], documents: Mapping[str, str]) -> list[Triplet]:
    """Clicked vs skipped-above pairs from click records `{"query": text, "doc_ids": [shown, best
    first], "clicked": [doc ids]}` (one per search; see docs/finetune.md for joining the feedback
    log, which does not store query text, with the application's queries).

    A click on the document at rank r says the user preferred it over every unclicked document
    shown above it (Joachims 2002), the click signal least confounded by position bias. Doc ids
    that are not in `documents` are skipped: a pair without its texts cannot be trained on.
    """
    triplets: list[Triplet] = []
    for n, record in enumerate(records, 1):
        query, shown, clicks = record.get("query"), record.get("doc_ids"), record.get("clicked")
        if not isinstance(query, str) or not query.strip() or not isinstance(shown, list) or not isinstance(clicks, list):
            raise FinetuneError(f"click record {n}: expected {{\"query\": str, \"doc_ids\": [...], \"clicked\": [...]}}")
        clicked = set(clicks)
        for rank, doc in enumerate(shown):
            if doc not in clicked or doc not in documents:
                continue
            triplets += [Triplet(query, documents[doc], documents[above])
                         for above in shown[:rank] if above not in clicked and above in documents]
    return triplets
