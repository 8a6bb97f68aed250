"""`rescore-sidecar ab runs`: the two rankings the simulator compares, written once as TREC run files.

    rescore-sidecar ab runs cranfield --out ab-runs --depth 20

indexes the collection into a local (or given) engine, retrieves BM25 top-`depth` per judged query
and reranks it with the sidecar (its offline default model unless `--sidecar` is given), through the
evaluation tool's own runner (`tools.eval.runner.run_eval`). Writes `engine.run` (BM25 order),
`model.run` (reranked) and `qrels.txt` (TREC qrels with the collection's gains), the inputs of
`rescore-sidecar ab simulate`. Run files carry no engine scores: the score column is depth - rank.
"""
from __future__ import annotations

import argparse
import contextlib
import pathlib
import sys
from typing import Mapping, Sequence, TextIO

ENGINE_RUN, MODEL_RUN, QRELS = "engine.run", "model.run", "qrels.txt"


def write_run(out: TextIO, rankings: Mapping[str, Sequence[str]], tag: str) -> None:
    """TREC run format: `query Q0 doc rank score tag`, rank from 1; score descending with rank."""
    for query_id, doc_ids in rankings.items():
        for rank, doc_id in enumerate(doc_ids, start=1):
            out.write(f"{query_id} Q0 {doc_id} {rank} {len(doc_ids) - rank + 1} {tag}\n")


def write_qrels(out: TextIO, qrels: Mapping[str, Mapping[str, int]]) -> None:
    for query_id, judged in qrels.items():
        for doc_id, gain in judged.items():
            out.write(f"{query_id} 0 {doc_id} {gain}\n")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rescore-sidecar ab runs", description=__doc__.split("\n\n")[0])
    p.add_argument("collection", help="'sample', 'cranfield' or a collection folder (as `rescore-sidecar eval`)")
    p.add_argument("--out", default="ab-runs", help="folder for engine.run, model.run, qrels.txt")
    p.add_argument("--depth", type=int, default=20, help="BM25 hits per query, all reranked (default 20)")
    p.add_argument("--engine-url", help="a running cluster instead of a local OpenSearch started for the run")
    p.add_argument("--index", default="rescore-ab-runs", help="index name (replaced!) (default rescore-ab-runs)")
    p.add_argument("--sidecar", metavar="HOST:PORT", help="a running sidecar instead of one started here")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    from rescore_sidecar.tools.eval.cli import resolve_collection
    from rescore_sidecar.tools.eval.collection import CollectionError
    from rescore_sidecar.tools.eval.runner import ENGINE_ORDER, RunSettings, parse_config, run_eval
    from rescore_sidecar.tools.eval.services import ServiceError, open_engine, open_sidecar, sigterm_as_interrupt

    if args.depth < 1:
        print("rescore-sidecar ab runs: --depth must be at least 1", file=sys.stderr)
        return 2
    try:
        collection = resolve_collection(args.collection)
    except CollectionError as exc:
        print(f"rescore-sidecar ab runs: {exc}", file=sys.stderr)
        return 2
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    config = parse_config(f"policy=replace,window={args.depth},label=model")
    rankings: dict[str, dict[str, list[str]]] = {}
    try:
        with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
            engine = open_engine(stack, args.engine_url, "opensearch", None, log=log)
            sidecar = open_sidecar(stack, args.sidecar, log=log)
            log(f"engine: {engine.describe()}; sidecar: {sidecar.describe()}")
            settings = RunSettings(index=args.index, depth=args.depth)
            report = run_eval(collection, engine, sidecar.address, [config], settings,
                              on_query=lambda q, r: rankings.__setitem__(q, r))
    except KeyboardInterrupt:
        return 130
    except ServiceError as exc:
        print(f"rescore-sidecar ab runs: {exc}", file=sys.stderr)
        return 1
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ENGINE_RUN, "w") as f:
        write_run(f, {q: r[ENGINE_ORDER] for q, r in rankings.items()}, "engine")
    with open(out / MODEL_RUN, "w") as f:
        write_run(f, {q: r["model"] for q, r in rankings.items()}, "model")
    with open(out / QRELS, "w") as f:
        write_qrels(f, collection.qrels)
    base, (cand,) = report.baseline, report.candidates
    for run in (base, cand):
        ndcg = run.per_query["ndcg@10"]
        log(f"{run.name}: nDCG@10 {sum(ndcg.values()) / len(ndcg):.4f} over {len(ndcg)} queries")
    log(f"wrote {out / ENGINE_RUN}, {out / MODEL_RUN}, {out / QRELS}")
    return 0
