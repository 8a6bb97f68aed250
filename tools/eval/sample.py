"""The small sample collection that ships with the project (for the demo and CI).

It is a slice of Cranfield 1400 in the simple format, gzip-compressed: some queries that have
several relevant documents, every document judged for them, and unjudged Cranfield documents as
distractors. Rebuild it (deterministically) with `python -m rescore_sidecar.tools.eval.sample`.
"""
from __future__ import annotations

import dataclasses
import pathlib
import random
import sys

from rescore_sidecar.tools.eval.collection import Collection, read_cranfield, read_simple, shared_data_dir, write_simple

SAMPLE_DIR = pathlib.Path(__file__).parent / "sample_data" / "cranfield-sample"


def load_sample() -> Collection:
    """The shipped sample collection (its qrels hold gains already: 5 - Cranfield grade)."""
    return dataclasses.replace(read_simple(SAMPLE_DIR), gain_note="gain = 5 - Cranfield grade (stored in qrels.txt); "
                                                                  "Cranfield's -1 stored as 0, not relevant")


def build_sample(source: Collection, *, num_queries: int = 30, num_documents: int = 300,
                 min_relevant: int = 5, seed: int = 7) -> Collection:
    rng = random.Random(seed)
    eligible = [q for q in source.queries if sum(g > 0 for g in source.qrels.get(q, {}).values()) >= min_relevant]
    queries = sorted(rng.sample(eligible, num_queries), key=int)
    judged = {d for q in queries for d in source.qrels[q]}
    if len(judged) > num_documents:
        raise ValueError(f"{len(judged)} documents are judged for the chosen queries; raise num_documents")
    others = sorted((d for d in source.documents if d not in judged and source.documents[d].text), key=int)
    chosen = sorted(judged | set(rng.sample(others, num_documents - len(judged))), key=int)
    return dataclasses.replace(
        source, name="cranfield-sample",
        documents={d: source.documents[d] for d in chosen},
        queries={q: source.queries[q] for q in queries},
        qrels={q: dict(source.qrels[q]) for q in queries},
        gain_note=source.gain_note)


def main() -> int:
    source = read_cranfield(shared_data_dir() / "cranfield")
    sample = build_sample(source)
    write_simple(sample, SAMPLE_DIR, compress=True)
    (SAMPLE_DIR / "README.md").write_text(
        "# cranfield-sample\n\n"
        f"{len(sample.queries)} queries and {len(sample.documents)} documents of the Cranfield 1400 collection "
        "(query ids are Cranfield's qrels numbering, i.e. the position in `cran.qry`), in the simple format of "
        "`connectors/eval/collection.py`. Gains: " + sample.gain_note + ".\n"
        "Built by `python -m rescore_sidecar.tools.eval.sample` from `../shared/data/cranfield`.\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in SAMPLE_DIR.iterdir())
    print(f"wrote {SAMPLE_DIR}: {len(sample.queries)} queries, {len(sample.documents)} documents, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
