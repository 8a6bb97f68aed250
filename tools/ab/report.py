"""`rescore-sidecar ab report EVENTS...`: per experiment, what the impression/feedback log says.

Interleaved experiments: impressions, wins per arm, ties, and the preference
Δ_AB = (wins_A + ties / 2) / (wins_A + wins_B + ties) - 1/2 (Chapelle et al. 2012; > 0 favours arm A,
the first arm of the experiment's first impression), over impressions with at least one click, with
a 95% percentile-bootstrap interval and an exact binomial sign test of wins A vs wins B (ties out);
an arm is named preferred when the interval excludes 0 and the sign test's p < 0.05.
Split experiments: per arm, impressions, CTR (impressions with a click; Wilson 95% interval) and
MRR of clicks (mean over impressions of 1 / rank of the highest clicked doc, 0 without a click;
normal 95% interval, clipped to [0, 1]). The event schema is in `connectors/feedback_log.py`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import sys
from typing import Iterable, Sequence

import numpy as np

Z95 = 1.959963984540054


class ReportError(ValueError):
    """An event file cannot be read as the log; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class InterleaveSummary:
    arms: tuple[str, str]
    impressions: int
    clicked: int                  # impressions with at least one click (the ones that count)
    wins: dict[str, int]          # arm -> impressions it won
    ties: int
    delta_ab: float | None        # None without a clicked impression
    delta_ci: Interval | None
    sign_test_p: float | None     # two-sided exact binomial, wins A vs wins B
    preferred: str | None         # when the interval excludes 0 and the sign test has p < 0.05


@dataclasses.dataclass(frozen=True)
class SplitArm:
    arm: str
    impressions: int
    clicked: int
    ctr: float | None
    ctr_ci: Interval | None
    mrr_of_clicks: float | None
    mrr_ci: Interval | None


@dataclasses.dataclass(frozen=True)
class ExperimentReport:
    experiment: str
    interleave: InterleaveSummary | None
    split: tuple[SplitArm, ...]
    orphan_feedback: int          # feedback events whose impression is not in the files read


def read_events(paths: Iterable[str | pathlib.Path]) -> list[dict]:
    events = []
    for path in paths:
        try:
            lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ReportError(f"{path}: {exc.strerror or exc}") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReportError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(event, dict) or event.get("type") not in ("impression", "feedback"):
                raise ReportError(f"{path}:{number}: not an impression or feedback event")
            missing = [k for k in (("id", "experiment", "mode", "arms", "doc_ids") if event["type"] == "impression"
                                   else ("impression_id", "clicked")) if k not in event]
            if missing:
                raise ReportError(f"{path}:{number}: {event['type']} event lacks {', '.join(missing)}")
            events.append(event)
    return events


def wilson(successes: int, n: int) -> Interval:
    centre = (successes + Z95 ** 2 / 2) / (n + Z95 ** 2)
    half = Z95 * math.sqrt(successes * (n - successes) / n + Z95 ** 2 / 4) / (n + Z95 ** 2)
    return Interval(centre - half, centre + half)


def delta_ab(wins_a: float, wins_b: float, ties: float) -> float:
    return (wins_a + ties / 2) / (wins_a + wins_b + ties) - 0.5


def summarize_interleave(arms: tuple[str, str], outcomes: Sequence[str | None], *, bootstrap: int = 2000,
                         seed: int = 0) -> InterleaveSummary:
    """`outcomes`: per impression the winning arm, "tie", or None (no click)."""
    from scipy.stats import binomtest

    wins = {arm: sum(o == arm for o in outcomes) for arm in arms}
    ties = sum(o == "tie" for o in outcomes)
    clicked = wins[arms[0]] + wins[arms[1]] + ties
    if not clicked:
        return InterleaveSummary(arms, len(outcomes), 0, wins, ties, None, None, None, None)
    delta = delta_ab(wins[arms[0]], wins[arms[1]], ties)
    # Percentile bootstrap over clicked impressions: resampling them is a multinomial draw of the three counts.
    draws = np.random.default_rng(seed).multinomial(clicked, [wins[arms[0]] / clicked, wins[arms[1]] / clicked,
                                                              ties / clicked], size=bootstrap)
    deltas = (draws[:, 0] + draws[:, 2] / 2) / clicked - 0.5
    ci = Interval(float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5)))
    decided = wins[arms[0]] + wins[arms[1]]
    p = float(binomtest(wins[arms[0]], decided).pvalue) if decided else None
    # Both must agree: the percentile bootstrap alone is overconfident on a handful of impressions.
    significant = p is not None and p < 0.05
    preferred = (arms[0] if ci.low > 0 else arms[1] if ci.high < 0 else None) if significant else None
    return InterleaveSummary(arms, len(outcomes), clicked, wins, ties, delta, ci, p, preferred)


def summarize_split(arm: str, first_click_ranks: Sequence[int | None]) -> SplitArm:
    """`first_click_ranks`: per impression the rank (1-based) of its highest clicked doc, or None."""
    n = len(first_click_ranks)
    if not n:
        return SplitArm(arm, 0, 0, None, None, None, None)
    clicked = sum(r is not None for r in first_click_ranks)
    rr = np.array([1.0 / r if r else 0.0 for r in first_click_ranks])
    mrr = float(rr.mean())
    half = Z95 * float(rr.std(ddof=1)) / math.sqrt(n) if n > 1 else None
    return SplitArm(arm, n, clicked, clicked / n, wilson(clicked, n), mrr,
                    None if half is None else Interval(max(mrr - half, 0.0), min(mrr + half, 1.0)))


def build_report(events: Iterable[dict], *, bootstrap: int = 2000, seed: int = 0,
                 curves: dict | None = None) -> list[ExperimentReport]:
    """Per experiment, sorted by name. A `curves` dict receives experiment -> (arms, per clicked
    interleaved impression in time order its score) for `plot.write_plot`."""
    impressions: dict[str, dict] = {}
    clicks: dict[str, set[str]] = {}
    feedback_experiment: dict[str, str] = {}
    for event in events:
        if event["type"] == "impression":
            impressions[event["id"]] = event
            clicks.setdefault(event["id"], set())
        else:
            clicks.setdefault(event["impression_id"], set()).update(event["clicked"])
            feedback_experiment[event["impression_id"]] = str(event.get("experiment", "?"))
    orphans: dict[str, int] = {}  # feedback whose impression is in none of the files (a rotated log, say)
    for impression_id in clicks.keys() - impressions.keys():
        experiment = feedback_experiment[impression_id]
        orphans[experiment] = orphans.get(experiment, 0) + 1
    by_experiment: dict[str, list[dict]] = {}
    for event in impressions.values():
        by_experiment.setdefault(event["experiment"], []).append(event)
    reports = []
    for experiment in sorted(by_experiment.keys() | orphans.keys()):
        shown = by_experiment.get(experiment, [])
        interleaved = [e for e in shown if e["mode"] == "interleave"]
        summary = None
        if interleaved:
            arms = tuple(interleaved[0]["arms"])
            if any(set(e["arms"]) != set(arms) for e in interleaved):
                raise ReportError(f"experiment {experiment!r}: interleaved impressions name different arms")
            winners = [_winner(e, clicks[e["id"]]) for e in interleaved]
            summary = summarize_interleave(arms, winners, bootstrap=bootstrap, seed=seed)
            if curves is not None:  # per clicked impression, in time order: +1/2 arm A won, -1/2 arm B, 0 tie
                timed = sorted(zip((float(e.get("ts", 0)) for e in interleaved), winners), key=lambda t: t[0])
                curves[experiment] = (arms, [{arms[0]: 0.5, arms[1]: -0.5, "tie": 0.0}[w] for _, w in timed if w])
        split: dict[str, list[int | None]] = {}
        for e in shown:
            if e["mode"] == "split":
                ranks = [e["doc_ids"].index(d) + 1 for d in clicks[e["id"]] if d in e["doc_ids"]]
                split.setdefault(e["arm"], []).append(min(ranks) if ranks else None)
        reports.append(ExperimentReport(experiment, summary,
                                        tuple(summarize_split(arm, r) for arm, r in sorted(split.items())),
                                        orphans.get(experiment, 0)))
    return reports


def _winner(impression: dict, clicked: set[str]) -> str | None:
    from rescore_sidecar.connectors._core.interleave import credit, Outcome

    arms = impression["arms"]
    teams = {doc: ("A" if arm == arms[0] else "B") for doc, arm in impression.get("teams", {}).items()}
    outcome = credit(teams, clicked)
    return {Outcome.WIN_A: arms[0], Outcome.WIN_B: arms[1], Outcome.TIE: "tie"}.get(outcome)


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ci(ci: Interval | None) -> str:
    return "" if ci is None else f" [{ci.low:.3f}, {ci.high:.3f}]"


def render_text(reports: Sequence[ExperimentReport]) -> str:
    out = []
    for r in reports:
        out.append(f"experiment {r.experiment}")
        s = r.interleave
        if s:
            a, b = s.arms
            out.append(f"  interleaved: {s.impressions} impressions, {s.clicked} with clicks")
            out.append(f"    wins: {a} {s.wins[a]}, {b} {s.wins[b]}; ties {s.ties}")
            out.append(f"    Δ_AB ({a} over {b}) = {_num(s.delta_ab)}{_ci(s.delta_ci)} (95% bootstrap); "
                       f"sign test p = {'–' if s.sign_test_p is None else format(s.sign_test_p, '.2g')}; preferred: {s.preferred or 'no decision yet'}")
        if r.split:
            out.append("  split:")
            out.append("    | arm | impressions | with clicks | CTR [95% CI] | MRR of clicks [95% CI] |")
            out.append("    | --- | ---: | ---: | --- | --- |")
            for arm in r.split:
                out.append(f"    | {arm.arm} | {arm.impressions} | {arm.clicked} | {_num(arm.ctr)}{_ci(arm.ctr_ci)} "
                           f"| {_num(arm.mrr_of_clicks)}{_ci(arm.mrr_ci)} |")
        if r.orphan_feedback:
            out.append(f"  {r.orphan_feedback} feedback events without their impression in these files")
    return "\n".join(out) + "\n" if out else "no impressions in these files\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rescore-sidecar ab report", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("events", nargs="+", help="event log files (JSON lines from connectors.feedback_log)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--plot", metavar="FILE.png", help="also draw Δ_AB as clicks came in, per interleaved experiment")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.bootstrap < 100:
        print("rescore-sidecar ab report: --bootstrap must be at least 100", file=sys.stderr)
        return 2
    try:
        curves: dict = {}
        reports = build_report(read_events(args.events), bootstrap=args.bootstrap, seed=args.seed, curves=curves)
    except ReportError as exc:
        print(f"rescore-sidecar ab report: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        from rescore_sidecar.tools.ab.plot import write_plot

        if curves:
            print(f"wrote {write_plot(curves, args.plot)}", file=sys.stderr)
        else:
            print("rescore-sidecar ab report: no interleaved experiment to plot", file=sys.stderr)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in reports], indent=2))
    else:
        print(render_text(reports), end="")
    return 0
