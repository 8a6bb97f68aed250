"""`rescore-sidecar ab simulate`: how many impressions interleaving and a split test need.

    rescore-sidecar ab simulate engine.run model.run --qrels qrels.txt

Two rankers (TREC run files) and judgements (TREC qrels) are replayed through a cascade click model
(`tools/ab/clicks.py`, parameters on the command line). Each impression draws a query uniformly;
interleaving shows the team-draft merge of both rankers' top `--depth` and scores wins per arm;
a split test shows one ranker's top `--depth` (each arm half the impressions) and compares CTR or
MRR of clicks. The right decision is the ranker with the higher nDCG@10. Over `--repetitions`
independent experiments it reports, per method, the smallest impression count (on a log grid) at
which the decision is right with probability >= 95%, and per repetition the count from which its
decision stays right (median, quartiles).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from typing import Sequence

import numpy as np

from rescore_sidecar.tools.ab.clicks import (CascadeModel, Outcomes, WIN_A, WIN_B, outcome_distributions,
                                             read_run)

METHODS = ("interleaving (team-draft)", "split test: CTR", "split test: MRR of clicks")


@dataclasses.dataclass(frozen=True)
class MethodResult:
    method: str
    n_95: int | None                   # smallest grid N with P(right) >= 0.95 (None: beyond the grid)
    settle_median: float | None        # per repetition: N from which the decision stays right
    settle_p25: float | None
    settle_p75: float | None
    unsettled: float                   # share of repetitions still wrong (or undecided) at the grid's end
    p_right: list[float]               # per grid N


@dataclasses.dataclass(frozen=True)
class Simulation:
    queries: int
    ndcg_a: float
    ndcg_b: float
    depth: int
    model: CascadeModel
    repetitions: int
    grid: list[int]
    methods: list[MethodResult]


def impression_grid(max_impressions: int, points: int = 100) -> np.ndarray:
    return np.unique(np.geomspace(2, max_impressions, points).round().astype(np.int64))


def _cumulative_counts(rng: np.random.Generator, p: np.ndarray, grid: np.ndarray, repetitions: int) -> np.ndarray:
    """Counts per outcome after each grid N, per repetition: (len(grid), repetitions, len(p)).
    Drawing the increments between grid points is exact for independent impressions."""
    steps = np.diff(grid, prepend=0)
    p = p / p.sum()
    return np.cumsum(np.stack([rng.multinomial(int(k), p, size=repetitions) for k in steps]), axis=0)


def _summarize(method: str, right: np.ndarray, grid: np.ndarray) -> MethodResult:
    """`right`: (len(grid), repetitions) booleans: is each repetition's decision right after N impressions."""
    p_right = right.mean(axis=1)
    above = np.nonzero(p_right >= 0.95)[0]
    n_95 = int(grid[above[0]]) if len(above) else None
    # Per repetition: the first grid point from which every later decision is right (inf: wrong at the end).
    wrong = ~right
    last_wrong = (len(grid) - 1) - np.argmax(wrong[::-1], axis=0)
    settle_index = np.where(wrong.any(axis=0), last_wrong + 1, 0)
    settle = np.where(settle_index < len(grid), grid[np.minimum(settle_index, len(grid) - 1)], np.inf)

    def quantile(q: float) -> float | None:
        value = float(np.quantile(settle, q, method="higher"))
        return value if np.isfinite(value) else None

    return MethodResult(method, n_95, quantile(0.5), quantile(0.25), quantile(0.75),
                        float(np.mean(~np.isfinite(settle))), p_right.round(4).tolist())


def simulate(outcomes: Outcomes, *, repetitions: int = 1000, max_impressions: int = 1_000_000,
             seed: int = 0, depth: int = 10, model: CascadeModel = CascadeModel()) -> Simulation:
    if outcomes.ndcg_a == outcomes.ndcg_b:
        raise ValueError("both rankers have the same nDCG@10: there is no right decision to reach")
    a_better = outcomes.ndcg_a > outcomes.ndcg_b
    rng = np.random.default_rng(seed)
    grid = impression_grid(max_impressions)
    inter = _cumulative_counts(rng, outcomes.interleave, grid, repetitions)
    margin = inter[..., WIN_A] - inter[..., WIN_B]
    right_inter = margin > 0 if a_better else margin < 0
    # Split: one categorical over (arm, first-click rank or none); each arm gets half the impressions.
    joint = np.concatenate([outcomes.first_click_a, outcomes.first_click_b]) / 2
    split = _cumulative_counts(rng, joint, grid, repetitions)
    width = len(outcomes.first_click_a)
    rr = np.append(1.0 / np.arange(1, width), 0.0)
    results = [_summarize(METHODS[0], right_inter, grid)]
    for name, values in ((METHODS[1], (rr > 0).astype(float)), (METHODS[2], rr)):
        n_a, n_b = split[..., :width].sum(-1), split[..., width:].sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = (split[..., :width] @ values) / n_a - (split[..., width:] @ values) / n_b
        right = np.nan_to_num(diff if a_better else -diff, nan=0.0) > 0
        results.append(_summarize(name, right, grid))
    return Simulation(len(outcomes.queries), outcomes.ndcg_a, outcomes.ndcg_b, depth, model, repetitions,
                      grid.tolist(), results)


def _n(x: float | None, grid_end: int) -> str:
    return f"> {grid_end:,}" if x is None else f"{int(x):,}"


def render_markdown(sim: Simulation, name_a: str = "A", name_b: str = "B") -> str:
    end = sim.grid[-1]
    better = name_a if sim.ndcg_a > sim.ndcg_b else name_b
    lines = [f"{sim.queries} queries; nDCG@10: {name_a} {sim.ndcg_a:.4f}, {name_b} {sim.ndcg_b:.4f} "
             f"(right decision: {better}); top {sim.depth} shown; cascade clicks P(click | gain 0..) = "
             f"{list(sim.model.click)}, P(stop | click, gain 0..) = {list(sim.model.stop)}; "
             f"{sim.repetitions} repetitions, impressions on a log grid up to {end:,}.", "",
             "| method | impressions for a right decision with 95% probability | per repetition: impressions until "
             "the decision stays right, median [p25, p75] | still wrong at the end |",
             "| --- | ---: | ---: | ---: |"]
    for m in sim.methods:
        lines.append(f"| {m.method} | {_n(m.n_95, end)} | {_n(m.settle_median, end)} "
                     f"[{_n(m.settle_p25, end)}, {_n(m.settle_p75, end)}] | {m.unsettled:.1%} |")
    inter, *split = sim.methods
    best_split = [m.n_95 for m in split if m.n_95 is not None]
    if inter.n_95 and best_split:
        lines += ["", f"Interleaving needs 1/{min(best_split) / inter.n_95:.1f} of the impressions of the best split "
                      "test (95% points)."]
    return "\n".join(lines) + "\n"


def _probs(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated probabilities, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rescore-sidecar ab simulate", description=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", help="ranker A: TREC run file (query Q0 doc rank score tag)")
    p.add_argument("run_b", help="ranker B: TREC run file")
    p.add_argument("--qrels", required=True, help="judgements: TREC qrels (query 0 doc gain), gain <= 0 not relevant")
    p.add_argument("--name-a", default="A", help="ranker A's name in the table")
    p.add_argument("--name-b", default="B", help="ranker B's name in the table")
    p.add_argument("--depth", type=int, default=10, help="results shown per impression (default 10)")
    p.add_argument("--click-probs", type=_probs, default=CascadeModel().click, metavar="P0,P1,...",
                   help="P(click) by gain 0, 1, ... (default %(default)s; higher gains use the last)")
    p.add_argument("--stop-probs", type=_probs, default=CascadeModel().stop, metavar="P0,P1,...",
                   help="P(stop reading | click) by gain (default %(default)s)")
    p.add_argument("--repetitions", type=int, default=1000, help="independent experiments (default 1000)")
    p.add_argument("--max-impressions", type=int, default=1_000_000, help="end of the grid (default 1000000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    from rescore_sidecar.tools.eval.collection import CollectionError, read_trec_qrels

    try:
        if args.depth < 1 or args.repetitions < 20 or args.max_impressions < 100:
            raise ValueError("--depth >= 1, --repetitions >= 20 and --max-impressions >= 100, please")
        model = CascadeModel(args.click_probs, args.stop_probs)
        outcomes = outcome_distributions(read_run(args.run_a), read_run(args.run_b), read_trec_qrels(pathlib.Path(args.qrels)),
                                         model, args.depth)
        sim = simulate(outcomes, repetitions=args.repetitions, max_impressions=args.max_impressions,
                       seed=args.seed, depth=args.depth, model=model)
    except (OSError, ValueError, CollectionError) as exc:
        print(f"rescore-sidecar ab simulate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**dataclasses.asdict(sim), "name_a": args.name_a, "name_b": args.name_b}, indent=2))
    else:
        print(render_markdown(sim, args.name_a, args.name_b), end="")
    return 0
