"""`rescore-sidecar finetune`: a cross-encoder adapted to your collection, judged on held-out queries.

    rescore-sidecar finetune cranfield --out models/cran-ce --eval

indexes the collection into an engine (a local OpenSearch unless --engine-url), mines hard negatives
from BM25's top hits for the training queries, trains (sentence-transformers' CrossEncoderTrainer),
writes a model folder the sidecar serves as is, and with --eval runs `rescore-sidecar eval` on the
held-out queries: engine order vs. the starting model vs. the fine-tuned one.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import sys
import time
from typing import Sequence

from rescore_sidecar.tools.eval.collection import Collection, CollectionError
from rescore_sidecar.tools.eval.report import SystemRun
from rescore_sidecar.tools.eval.services import ServiceError, open_engine, open_sidecar, sigterm_as_interrupt
from rescore_sidecar.tools.finetune.data import (FinetuneError, Pair, click_triplets, judged_pairs, judged_triplets,
                                                 split_queries)
from rescore_sidecar.tools.finetune.train import BUNDLED, LOSSES, TrainSettings, start_source


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rescore-sidecar finetune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("collection", help="'sample', 'cranfield' or a collection folder (the formats of `eval`)")
    p.add_argument("--out", required=True, type=pathlib.Path, help="model folder to write (the sidecar serves it)")
    p.add_argument("--start", default=BUNDLED,
                   help="starting checkpoint: a hub id, a local folder, or 'bundled' (all-MiniLM-L6-v2 with a "
                        "fresh classification head; default)")
    p.add_argument("--held-out", type=float, default=0.4, help="share of judged queries held out (default 0.4)")
    p.add_argument("--seed", type=int, default=0, help="split, head initialisation and data order (default 0)")
    p.add_argument("--negatives", type=int, default=8, help="hard negatives mined per query (default 8)")
    p.add_argument("--depth", type=int, default=50, help="engine hits to mine negatives from (default 50)")
    p.add_argument("--clicks", type=pathlib.Path, help="click records, JSON lines {query, doc_ids, clicked}")
    p.add_argument("--loss", choices=LOSSES, default="bce",
                   help="bce: judged pairs (default); margin-mse: distil --teacher's score margins")
    p.add_argument("--teacher", metavar="MODEL", help="a cross-encoder the sidecar serves (margin-mse)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=0, help="stop after N optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=256, help="tokens per (query, document) pair (default 256)")
    p.add_argument("--save-steps", type=int, default=200, help="checkpoint every N steps (default 200)")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--eval", action="store_true", help="evaluate start vs fine-tuned on the held-out queries")
    p.add_argument("--eval-window", type=int, default=50, help="rescoring window of the evaluation (default 50)")
    engine = p.add_argument_group("engine and sidecar (as in `eval`)")
    engine.add_argument("--engine-url")
    engine.add_argument("--engine", choices=("opensearch", "elasticsearch"), default="opensearch")
    engine.add_argument("--engine-version")
    engine.add_argument("--index", default="rescore-finetune", help="index name (replaced!)")
    engine.add_argument("--no-reindex", action="store_true")
    engine.add_argument("--sidecar", metavar="HOST:PORT", help="a running sidecar serving --teacher")
    engine.add_argument("--teacher-model", action="append", default=[], metavar="[NAME=]SOURCE",
                        help="start a sidecar serving this model for --teacher (instead of --sidecar)")
    p.add_argument("--no-progress", action="store_true")
    return p


def read_clicks(path: pathlib.Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FinetuneError(f"--clicks {path}: {exc.strerror}") from None
    records = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise FinetuneError(f"--clicks {path}:{n}: not JSON ({exc.msg})") from None
    return records


def engine_rankings(client, index: str, collection: Collection, query_ids: Sequence[str], depth: int) -> dict[str, list[str]]:
    from rescore_sidecar.tools.eval.runner import bm25_body, ranked_ids

    out = {}
    for q in query_ids:
        response = client.search(index=index, body=bm25_body(collection.queries[q], depth))
        out[q] = ranked_ids(response.body if hasattr(response, "body") else response)
    return out


def check_start(args: argparse.Namespace) -> None:
    if args.loss == "margin-mse" and not args.teacher:
        raise FinetuneError("--loss margin-mse needs --teacher MODEL (a cross-encoder the sidecar serves)")
    if args.teacher and args.loss != "margin-mse":
        raise FinetuneError("--teacher is used by --loss margin-mse only")
    if args.teacher and not (args.sidecar or args.teacher_model):
        raise FinetuneError("--teacher needs --sidecar HOST:PORT or --teacher-model [NAME=]SOURCE")
    if args.negatives < 1 or args.depth < args.negatives:
        raise FinetuneError("--negatives must be >= 1 and --depth at least --negatives")
    if args.start != BUNDLED and not pathlib.Path(args.start).exists() and "/" not in args.start:
        raise FinetuneError(f"--start {args.start!r}: no such folder (and not a hub id owner/name)")


def run(args: argparse.Namespace, log=print) -> int:
    from rescore_sidecar.tools.eval.cli import resolve_collection
    from rescore_sidecar.tools.eval.runner import index_collection

    settings = TrainSettings(
        output=args.out, start=args.start, loss=args.loss, epochs=args.epochs, max_steps=args.steps,
        batch_size=args.batch_size, learning_rate=args.learning_rate, max_length=args.max_length, seed=args.seed,
        save_steps=args.save_steps, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
        device=args.device)
    settings.check()
    check_start(args)
    collection = resolve_collection(args.collection)
    split = split_queries(collection.judged_queries(), args.held_out, args.seed)
    clicks = read_clicks(args.clicks) if args.clicks else []
    log(f"{collection.name}: {len(split.train)} training queries, {len(split.held_out)} held out (seed {args.seed})")
    with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
        engine = open_engine(stack, args.engine_url, args.engine, args.engine_version, log=log)
        client = engine.client()
        stack.callback(client.close)
        if not args.no_reindex:
            index_collection(client, engine, args.index, collection)
        ranked = engine_rankings(client, args.index, collection, split.train, args.depth)
        documents = {d.id: d.full_text() for d in collection.documents.values()}
        from_clicks = click_triplets(clicks, documents)
        labels = None
        if args.loss == "bce":
            examples: list = judged_pairs(collection, split.train, ranked, args.negatives)
            examples += [Pair(t.query, d, label) for t in from_clicks for d, label in ((t.positive, 1.0), (t.negative, 0.0))]
        else:
            from rescore_sidecar.connectors import SidecarClient, SidecarClientConfig
            from rescore_sidecar.tools.finetune.teacher import check_teacher, teacher_margins

            sidecar = open_sidecar(stack, args.sidecar, args.teacher_model, log=log)
            check_teacher(sidecar.models, sidecar.kinds, args.teacher)
            examples = judged_triplets(collection, split.train, ranked, args.negatives) + from_clicks
            with SidecarClient(SidecarClientConfig(targets=(sidecar.address,), budget_ms=600_000)) as teacher:
                labels = teacher_margins(examples, lambda q, texts: teacher.rerank(q, texts, model=args.teacher).scores)
        log(f"training on {len(examples)} examples ({args.loss}"
            f"{f', {len(from_clicks)} from clicks' if clicks else ''}) from {args.start} ...")
        from rescore_sidecar.tools.finetune.train import train

        started = time.monotonic()
        result = train(settings, examples, labels)
        minutes = (time.monotonic() - started) / 60
        losses = [h["loss"] for h in result["log_history"] if "loss" in h]
        log(f"trained {result['global_step']} steps in {minutes:.1f} min; loss {losses[0]:.4f} -> {losses[-1]:.4f}"
            if losses else f"trained {result['global_step']} steps in {minutes:.1f} min")
        if losses and losses[-1] > 0.9 * losses[0]:
            log(f"WARNING: the training loss fell by less than 10% ({losses[0]:.4f} -> {losses[-1]:.4f}): the model "
                "has barely learned; more steps, a higher --learning-rate or a cross-encoder --start would help")
        log(f"wrote {settings.output} (serve it: rescore-sidecar serve --model {settings.output})")
        if args.eval:
            evaluate(stack, args, collection.subset(list(split.held_out)), engine, log)
    return 0


def evaluate(stack: contextlib.ExitStack, args: argparse.Namespace, held_out: Collection, engine, log) -> None:
    """`rescore-sidecar eval` on the held-out queries: engine order, the start model and the fine-tuned one."""
    from rescore_sidecar.tools.eval.cli import progress_bars
    from rescore_sidecar.tools.eval.report import write_all
    from rescore_sidecar.tools.eval.runner import RunSettings, parse_config, run_eval

    sidecar = open_sidecar(stack, None, [f"start={start_source(args.start)}", f"tuned={args.out.resolve()}"], log=log)
    window = min(args.eval_window, 100)
    configs = [parse_config(f"model={m},window={window},label={label}")
               for m, label in (("start", f"start ({args.start})"), ("tuned", "fine-tuned"))]
    report = run_eval(held_out, engine, sidecar.address, configs,
                      RunSettings(index=args.index, depth=100, reindex=False),
                      progress=progress_bars(not args.no_progress),
                      context={"command": "rescore-sidecar finetune " + " ".join(sys.argv[2:]),
                               "held_out_queries": len(held_out.queries), "sidecar": sidecar.describe()})
    paths = write_all(report, args.out.with_name(args.out.name + ".eval"))
    print(paths["markdown"].read_text(), end="")
    log(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}")
    for line in verdict(report.baseline, *report.candidates):
        log(line)


def verdict(engine: SystemRun, start: SystemRun, tuned: SystemRun, metric: str = "ndcg@10") -> list[str]:
    """What the held-out numbers say about serving the fine-tuned model: one line against each of
    engine order and the start model, and a warning when it is significantly worse than either
    (a fine-tuning run can make a model worse: too few steps, or negatives that teach the wrong thing)."""
    from rescore_sidecar.tools.eval.metrics import compare

    lines, worse = [], []
    for name, other in (("engine order", engine), ("the start model", start)):
        c = compare(metric, other.per_query[metric], tuned.per_query[metric])
        lines.append(f"held-out {metric}: fine-tuned {c.candidate:.4f} vs {name} {c.baseline:.4f} "
                     f"({c.delta:+.4f}, 95% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}])")
        if c.ci_high < 0:
            worse.append(name)
    if worse:
        lines.append(f"WARNING: the fine-tuned model is significantly worse than {' and '.join(worse)} on the "
                     "held-out queries; do not serve it (docs/finetune.md, 'When the result is worse')")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731 - stdout carries the eval table only
    try:
        return run(args, log)
    except (FinetuneError, CollectionError, ServiceError) as exc:
        print(f"rescore-sidecar finetune: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rescore-sidecar finetune: interrupted; resume with --resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line, not a traceback
        if os.environ.get("RESCORE_DEBUG"):
            raise
        print(f"rescore-sidecar finetune: failed: {type(exc).__name__}: {exc} (RESCORE_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
