"""`rescore-sidecar demo` (`make demo`): the whole product end to end, on a fresh machine, offline.

Starts a local OpenSearch, indexes the Cranfield sample that ships with the project, starts the
sidecar on its offline default model (the pretrained all-MiniLM-L6-v2 bi-encoder), then shows a few
queries' engine top 5 beside the reranked top 5 and the evaluation table over all sample queries.
`--engine-url`, `--sidecar` and `--model` point it at your own cluster, sidecar or model instead.
Everything it started (engine, sidecar, the demo index on your cluster) is removed on exit,
Ctrl-C and failure alike.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import textwrap
from typing import Sequence

from rescore_sidecar.tools.eval.collection import Collection
from rescore_sidecar.tools.eval.report import Report, write_all
from rescore_sidecar.tools.eval.runner import ENGINE_ORDER, RunSettings, parse_config, run_eval
from rescore_sidecar.tools.eval.sample import load_sample
from rescore_sidecar.tools.eval.services import ServiceError, open_engine, open_sidecar, sigterm_as_interrupt


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rescore-sidecar demo", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=("opensearch", "elasticsearch"), default="opensearch",
                   help="local engine to start (default opensearch)")
    p.add_argument("--engine-version", help="version or major of the local engine")
    p.add_argument("--engine-url", help="use your running cluster (the demo index is deleted afterwards)")
    p.add_argument("--index", default="rescore-demo", help="index name (default rescore-demo)")
    p.add_argument("--sidecar", metavar="HOST:PORT", help="use your running sidecar")
    p.add_argument("--model", metavar="[NAME=]SOURCE", help="model for the started sidecar (default: the "
                   "offline all-MiniLM-L6-v2 bi-encoder)")
    p.add_argument("--rerank", default="policy=replace", metavar="SPEC",
                   help="rescoring config: model=, window=, policy=replace|linear|rrf, weight=, rrf_k= "
                        "(default policy=replace)")
    p.add_argument("--queries", type=int, default=0, metavar="N", help="evaluate only the first N sample queries")
    p.add_argument("--show", type=int, default=3, metavar="N", help="queries shown side by side (default 3)")
    p.add_argument("--out", help="also write report.json/.md/.png here")
    p.add_argument("--no-progress", action="store_true")
    return p


# ---------------------------------------------------------------- terminal output

def _symbols() -> tuple[str, str]:
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower()
    return ("●", "·") if "utf" in encoding else ("*", ".")


def side_by_side(collection: Collection, query_id: str, left: list[str], right: list[str],
                 width: int, top: int = 5) -> str:
    """The query, then engine and reranked top `top` in two columns, relevant hits marked."""
    dot, none = _symbols()
    col = max(30, (width - 3) // 2)
    judged = collection.qrels.get(query_id, {})

    def cell(rank: int, doc_id: str | None) -> str:
        if doc_id is None:
            return ""
        gain = judged.get(doc_id, 0)
        marks = (dot * gain).ljust(4, " ") if gain > 0 else none.ljust(4)
        title = collection.documents[doc_id].title or collection.documents[doc_id].text
        text = f"{rank}. {marks} {title}"
        return text if len(text) <= col else text[: col - 1] + "…"

    lines = textwrap.wrap(f"Q{query_id}: {collection.queries[query_id]}", width=width)
    lines.append(f"{'engine order (BM25)':<{col}} │ reranked")
    lines.append("─" * col + "─┼─" + "─" * col)
    for i in range(top):
        a = cell(i + 1, left[i] if i < len(left) else None)
        b = cell(i + 1, right[i] if i < len(right) else None)
        lines.append(f"{a:<{col}} │ {b}")
    return "\n".join(lines)


def summary_table(report: Report) -> str:
    """A compact terminal table: means, deltas with their 95% CI and wins/losses per metric."""
    rows = [["", *report.metrics, "added p50/p99 ms"]]
    rows.append([report.baseline.name, *(f"{report.baseline.mean(m):.3f}" for m in report.metrics), "–"])
    notes = []
    for cand in report.candidates:
        comps = report.comparisons(cand)
        lat = cand.latency
        rows.append([cand.name, *(f"{c.candidate:.3f} ({c.delta:+.3f}{'*' if c.significant else ''})" for c in comps),
                     f"{lat.p50_ms:.0f} / {lat.p99_ms:.0f}" if lat and lat.count else "–"])
        for c in comps:
            notes.append(f"  {c.metric:<10} Δ {c.delta:+.3f}  95% CI [{c.ci_low:+.3f}, {c.ci_high:+.3f}]  "
                         f"p = {c.p_value:.3f}  better/worse/same on {c.wins}/{c.losses}/{c.ties} queries")
        if cand.fallbacks:
            notes.append(f"  {cand.fallbacks} queries fell back to engine order (sidecar unavailable or slow)")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            out.append("  ".join("─" * w for w in widths))
    return "\n".join(out + [""] + notes + ["  * p < 0.05 (paired randomisation test over queries)"])


# ---------------------------------------------------------------- the demo

def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    width = min(shutil.get_terminal_size((110, 24)).columns, 140)
    say = lambda msg="": print(msg, flush=True)  # noqa: E731
    log = lambda msg: print(f"  {msg}", file=sys.stderr, flush=True)  # noqa: E731
    if args.sidecar and args.model:
        print("rescore-sidecar demo: --model is for the sidecar the demo starts; with --sidecar, pick a served "
              "model with --rerank model=NAME", file=sys.stderr)
        return 2
    try:
        parse_config(args.rerank)  # bad flags fail before anything is started
    except ValueError as exc:
        print(f"rescore-sidecar demo: {exc}", file=sys.stderr)
        return 2
    collection = load_sample()
    if args.queries > 0:
        collection = collection.subset(collection.judged_queries()[: args.queries])
    say(f"rescore-sidecar demo: {len(collection.documents)} Cranfield abstracts, {len(collection.queries)} judged "
        "queries; BM25 engine order vs. reranked by the sidecar")
    rankings: dict[str, dict[str, list[str]]] = {}
    try:
        with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
            engine = open_engine(stack, args.engine_url, args.engine, args.engine_version, log=log)
            if not engine.started_here:
                stack.callback(_drop_index, engine, args.index)
            sidecar = open_sidecar(stack, args.sidecar, [args.model] if args.model else [], log=log)
            config = parse_config(args.rerank, default_model=sidecar.models[0] if sidecar.models else "")
            if config.options.get("model") and config.options["model"] not in sidecar.models:
                raise ValueError(f"the sidecar serves no model {config.options['model']!r} "
                                 f"(it serves {', '.join(sidecar.models)})")
            say(f"engine:  {engine.describe()}\nsidecar: {sidecar.describe()}\nrerank:  {config.label}\n")
            progress = None
            if not args.no_progress:
                from tqdm import tqdm

                progress = lambda it, **kw: tqdm(it, file=sys.stderr, leave=False, dynamic_ncols=True, **kw)  # noqa: E731
            report = run_eval(collection, engine, sidecar.address, [config], RunSettings(index=args.index),
                              progress=progress, context={"command": "rescore-sidecar demo"},
                              on_query=lambda q, r: rankings.__setitem__(q, r), log=log)
        dot, _ = _symbols()
        say(f"{dot} marks a relevant abstract ({dot * 4} = complete answer … {dot} = minimum interest)\n")
        for q in list(rankings)[: max(args.show, 0)]:
            say(side_by_side(collection, q, rankings[q][ENGINE_ORDER], rankings[q][config.label], width))
            say()
        say(f"Ranking quality over all {report.num_queries} sample queries (top {report.depth} from the engine):\n")
        say(summary_table(report))
        say(f"\n{report.latency_method} The latency shown is the steady one: the model was warmed first.")
        if args.out:
            paths = write_all(report, args.out)
            say(f"\nwrote {paths['json']}, {paths['markdown']}, {paths['plot']}")
        say("\nEverything the demo started has been stopped. Full evaluation: rescore-sidecar eval --help")
        return 0
    except KeyboardInterrupt:
        print("\nrescore-sidecar demo: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    except (ServiceError, ValueError) as exc:
        print(f"rescore-sidecar demo: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one clear line, not a traceback
        if os.environ.get("RESCORE_DEBUG"):
            raise
        print(f"rescore-sidecar demo: failed: {type(exc).__name__}: {exc} (RESCORE_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


def _drop_index(engine, index: str) -> None:
    client = engine.client()
    try:
        if client.indices.exists(index=index):
            client.indices.delete(index=index)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
