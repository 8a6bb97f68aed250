"""Teacher margins for distillation: a larger reranker the sidecar serves scores each triplet.

MarginMSE (Hofstätter et al. 2020) trains the student to reproduce the teacher's score gap
between a better and a worse document, so a MiniLM-size model learns what bge-reranker-v2-m3
knows about the user's domain without the user labelling more than they already have.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

from rescore_sidecar.tools.finetune.data import FinetuneError, Triplet


def check_teacher(served: Sequence[str], kinds: Sequence[str], teacher: str) -> None:
    """Fails at start when the sidecar does not serve `teacher` as a cross-encoder."""
    if teacher not in served:
        raise FinetuneError(f"teacher model {teacher!r} is not served by the sidecar (it serves "
                            f"{', '.join(served) or 'nothing'}); start it with --model {teacher}=SOURCE")
    kind = dict(zip(served, kinds)).get(teacher, "")
    if kind and kind != "cross-encoder":
        raise FinetuneError(f"teacher model {teacher!r} is a {kind}; a teacher must be a cross-encoder")


def teacher_margins(triplets: Sequence[Triplet], score: Callable[[str, Sequence[str]], Sequence[float]],
                    progress: Callable[[Iterable], Iterable] = lambda it: it) -> list[float]:
    """teacher(query, positive) - teacher(query, negative) per triplet, one sidecar call per query.

    `score(query, texts)` returns one score per text (the sidecar client's `rerank`). Documents
    that repeat within a query are scored once.
    """
    by_query: dict[str, list[int]] = {}
    for i, t in enumerate(triplets):
        by_query.setdefault(t.query, []).append(i)
    margins = [0.0] * len(triplets)
    for query in progress(list(by_query)):
        indexes = by_query[query]
        texts = list(dict.fromkeys(d for i in indexes for d in (triplets[i].positive, triplets[i].negative)))
        scores = dict(zip(texts, score(query, texts)))
        for i in indexes:
            margins[i] = float(scores[triplets[i].positive] - scores[triplets[i].negative])
    return margins
