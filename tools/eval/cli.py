"""`rescore-sidecar eval`: ranking quality of engine order vs. rescoring configurations.

    rescore-sidecar eval cranfield --config policy=replace --config policy=linear,weight=0.5 --out eval-out

writes eval-out/report.json, report.md and report.png and prints the Markdown table.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import sys
from typing import Sequence

from rescore_sidecar.tools.eval.collection import CollectionError, Collection, load_collection, shared_data_dir
from rescore_sidecar.tools.eval.report import write_all
from rescore_sidecar.tools.eval.runner import RescoreConfig, RunSettings, parse_config, run_eval
from rescore_sidecar.tools.eval.services import ServiceError, open_engine, open_sidecar, sigterm_as_interrupt

DEFAULT_CONFIGS = ("policy=replace", "policy=linear,weight=0.5", "policy=rrf")


def resolve_collection(name: str) -> Collection:
    """"sample" (ships with the project), "cranfield" (the shared data folder) or a folder path."""
    if name == "sample":
        from rescore_sidecar.tools.eval.sample import load_sample

        return load_sample()
    if name == "cranfield":
        return load_collection(shared_data_dir() / "cranfield")
    return load_collection(name)


def build_parser(prog: str = "rescore-sidecar eval") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Index a test collection into OpenSearch/Elasticsearch, retrieve BM25 top-k through the "
                    "connector, rescore through the sidecar with each configuration, and report nDCG@10, "
                    "MRR@10, Recall@k, paired significance and added latency (JSON, Markdown, PNG).",
        epilog="collection formats: a folder with corpus.jsonl ({id, title, text}), queries.jsonl ({id, text}) "
               "and qrels.txt (TREC: qid 0 docid grade), or the Cranfield files (cran.all.1400, cran.qry, "
               "cranqrel).\nconfig keys: model=NAME, window=N, policy=replace|linear|rrf, weight=0..1 (linear), "
               "rrf_k=N, label=TEXT")
    p.add_argument("collection", help="'sample' (ships with the project), 'cranfield' ($RESCORE_DATA_DIR or "
                                      "../shared/data) or a collection folder")
    p.add_argument("--config", action="append", default=[], metavar="SPEC",
                   help=f"a rescoring configuration, repeatable (default: {' / '.join(DEFAULT_CONFIGS)})")
    p.add_argument("--queries", type=int, default=0, metavar="N", help="evaluate only the first N judged queries")
    p.add_argument("--depth", type=int, default=100, help="BM25 hits retrieved per query (default 100)")
    p.add_argument("--window", type=int, default=50, help="default rescoring window (default 50)")
    p.add_argument("--recall-k", type=int, default=10, help="k of Recall@k (default 10)")
    p.add_argument("--warmup", type=int, default=3, metavar="N",
                   help="untimed warm-up queries through every configuration before the timed ones (default 3)")
    p.add_argument("--cached-latency", action="store_true",
                   help="also measure cache-served latency (the same search repeated, as for page 2), reported "
                        "apart; added latency is always measured with the score cache bypassed")
    engine = p.add_argument_group("engine (default: a local OpenSearch started for the run)")
    engine.add_argument("--engine-url", help="use this running cluster instead, e.g. http://127.0.0.1:9200")
    engine.add_argument("--engine", choices=("opensearch", "elasticsearch"), default="opensearch",
                        help="kind of local engine to start")
    engine.add_argument("--engine-version", help="version (or major) of the local engine")
    engine.add_argument("--index", default="rescore-eval", help="index name (replaced!) (default rescore-eval)")
    engine.add_argument("--no-reindex", action="store_true", help="the index already holds the collection")
    side = p.add_argument_group("sidecar (default: one started for the run on its offline default model)")
    side.add_argument("--sidecar", metavar="HOST:PORT", help="use this running sidecar instead")
    side.add_argument("--model", action="append", default=[], metavar="[NAME=]SOURCE",
                      help="model for the started sidecar, repeatable (first is the default)")
    side.add_argument("--budget-ms", type=float, default=60_000.0,
                      help="sidecar time budget per search (default 60000: never fall back for slowness)")
    p.add_argument("--selective-sweep", nargs="?", const="default", default=None, metavar="T1,T2,...",
                   help="instead of the report: nDCG@10 and the share of searches/pairs sent to the sidecar per "
                        "selective threshold, and nDCG@10 per window (50/30/20/10), for the first --config "
                        "(policy replace); writes OUT/sweep.md")
    p.add_argument("--out", default="eval-out", help="folder for report.json, report.md, report.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def check_args(args: argparse.Namespace, served: Sequence[str] = ()) -> list[RescoreConfig]:
    """Validated configurations; with `served` (the sidecar's models, default first) also checks names."""
    for name in ("depth", "window", "recall_k"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if args.queries < 0:
        raise ValueError("--queries must be >= 0")
    if args.warmup < 0:
        raise ValueError("--warmup must be >= 0")
    if args.sidecar and args.model:
        raise ValueError("--model picks models for a sidecar started here; with --sidecar, name a served "
                         "model in --config model=NAME instead")
    sweep_thresholds(args)
    configs = [parse_config(s, default_window=min(args.window, args.depth), default_model=served[0] if served else "")
               for s in (args.config or DEFAULT_CONFIGS)]
    for c in configs:
        if c.options["window"] > args.depth:
            raise ValueError(f"{c.label}: window {c.options['window']} is larger than --depth {args.depth}")
        if served and c.options.get("model") and c.options["model"] not in served:
            raise ValueError(f"{c.label}: the sidecar serves no model {c.options['model']!r} "
                             f"(it serves {', '.join(served)})")
    return configs


def progress_bars(enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda it, **kw: tqdm(it, file=sys.stderr, dynamic_ncols=True, leave=False, **kw)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        configs = check_args(args)
        collection = resolve_collection(args.collection)
        if args.queries:
            collection = collection.subset(collection.judged_queries()[: args.queries])
    except (ValueError, CollectionError) as exc:
        print(f"rescore-sidecar eval: {exc}", file=sys.stderr)
        return 2
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731 - stdout carries the table only
    try:
        with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
            engine = open_engine(stack, args.engine_url, args.engine, args.engine_version, log=log)
            sidecar = open_sidecar(stack, args.sidecar, args.model, log=log)
            log(f"engine: {engine.describe()}; sidecar: {sidecar.describe()}")
            configs = check_args(args, sidecar.models)
            settings = RunSettings(index=args.index, depth=args.depth, recall_k=args.recall_k,
                                   budget_ms=args.budget_ms, reindex=not args.no_reindex,
                                   warmup_queries=args.warmup, cached_latency=args.cached_latency)
            context = {"command": "rescore-sidecar eval " + " ".join(sys.argv[1:] if argv is None else argv),
                       "sidecar_models": dict(zip(sidecar.models, sidecar.kinds)), "sidecar": sidecar.describe(),
                       "sidecar_address": sidecar.address, "engine_url": engine.url,
                       "models_given": list(args.model)}
            if args.selective_sweep is not None:
                return _sweep(args, collection, engine, sidecar.address, configs[0], settings, log)
            report = run_eval(collection, engine, sidecar.address, configs, settings,
                              progress=progress_bars(not args.no_progress), context=context, log=log)
        paths = write_all(report, pathlib.Path(args.out))
    except KeyboardInterrupt:
        print("rescore-sidecar eval: interrupted; everything started here was stopped", file=sys.stderr)
        return 130
    except (ServiceError, ValueError) as exc:
        print(f"rescore-sidecar eval: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - engine/transport errors: one clear line, not a traceback
        if os.environ.get("RESCORE_DEBUG"):
            raise
        print(f"rescore-sidecar eval: failed: {type(exc).__name__}: {exc} (RESCORE_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1
    print(paths["markdown"].read_text(), end="")
    log(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']}")
    return 0


def sweep_thresholds(args: argparse.Namespace) -> tuple[float, ...]:
    """The thresholds of --selective-sweep (ValueError when one is not a number in [0, 1])."""
    from rescore_sidecar.tools.eval.sweep import DEFAULT_THRESHOLDS

    if args.selective_sweep in (None, "default"):
        return DEFAULT_THRESHOLDS
    try:
        thresholds = tuple(float(t) for t in args.selective_sweep.split(",") if t.strip())
    except ValueError:
        raise ValueError(f"--selective-sweep: thresholds must be numbers, got {args.selective_sweep!r}") from None
    if not thresholds or any(not 0.0 <= t <= 1.0 for t in thresholds):
        raise ValueError(f"--selective-sweep: thresholds must be in [0, 1], got {args.selective_sweep!r}")
    return thresholds


def _sweep(args: argparse.Namespace, collection: Collection, engine, address: str, config: RescoreConfig,
           settings: RunSettings, log) -> int:
    from rescore_sidecar.tools.eval import sweep

    thresholds = sweep_thresholds(args)
    window = int(config.options["window"])
    hits = sweep.collect_hits(collection, engine, address, config.options, settings.index, settings.depth,
                              settings.budget_ms, settings.reindex, progress_bars(not args.no_progress))
    from rescore_sidecar.tools.eval.runner import machine_description

    text = (f"{collection.name}, {len(hits)} judged queries, {config.label} (policy replace); "
            f"machine: {machine_description()}\n\n"
            + sweep.table(*sweep.sweep(collection.qrels, hits, window, thresholds)))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.md").write_text(text)
    print(text, end="")
    log(f"wrote {out / 'sweep.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
