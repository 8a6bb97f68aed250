"""An evaluation's results and its three renderings: JSON, a Markdown table and a PNG plot."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Sequence

from rescore_sidecar.tools.eval.metrics import Comparison, Latency, PerQuery, compare


@dataclasses.dataclass(frozen=True)
class SystemRun:
    """One ranking system over the evaluated queries: engine order or a rescoring configuration."""
    name: str
    per_query: dict[str, PerQuery]          # metric -> query id -> value
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    latency: Latency | None = None          # added by rescoring, score cache bypassed; None for engine order
    fallbacks: int = 0                      # queries answered in engine order because rescoring failed
    cached_latency: Latency | None = None   # served from the score cache; only when asked for (opt-in)

    def mean(self, metric: str) -> float:
        values = list(self.per_query[metric].values())
        return sum(values) / len(values)


@dataclasses.dataclass(frozen=True)
class Report:
    collection: str
    gain_note: str
    engine: str                             # e.g. "opensearch 2.19.6 (BM25, english analyzer)"
    depth: int                              # hits retrieved per query
    metrics: tuple[str, ...]
    baseline: SystemRun
    candidates: tuple[SystemRun, ...]
    context: dict[str, Any] = dataclasses.field(default_factory=dict)  # machine, command, sidecar, ...
    notes: tuple[str, ...] = ()             # extra lines shown under the table headline
    latency_method: str = ""                # how the latency figures were taken (shown in every rendering)

    @property
    def num_queries(self) -> int:
        return len(self.baseline.per_query[self.metrics[0]])

    def comparisons(self, candidate: SystemRun) -> list[Comparison]:
        return [compare(m, self.baseline.per_query[m], candidate.per_query[m]) for m in self.metrics]


# ---------------------------------------------------------------- JSON

def to_json(report: Report) -> dict[str, Any]:
    def system(run: SystemRun, comparisons: list[Comparison] | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": run.name, "settings": run.settings,
            "means": {m: run.mean(m) for m in report.metrics},
            "per_query": run.per_query,
        }
        if run.latency is not None:
            # NaN (no query was reranked) is not JSON: null instead.
            out["added_latency_ms"] = _latency_json(run.latency)
            out["fallbacks"] = run.fallbacks
        if run.cached_latency is not None:
            out["cache_served_latency_ms"] = _latency_json(run.cached_latency)
        if comparisons is not None:
            out["vs_engine"] = {c.metric: {k: v for k, v in dataclasses.asdict(c).items() if k != "metric"}
                                for c in comparisons}
        return out

    return {
        "collection": report.collection, "gain": report.gain_note, "engine": report.engine,
        "depth": report.depth, "queries": report.num_queries, "metrics": list(report.metrics),
        "significance": "95% CI: percentile bootstrap of the mean per-query delta (10,000 resamples); "
                        "p: two-sided paired randomisation test (10,000 sign flips)",
        "latency_method": report.latency_method,
        "context": report.context, "notes": list(report.notes),
        "engine_order": system(report.baseline, None),
        "configurations": [system(c, report.comparisons(c)) for c in report.candidates],
    }


def _latency_json(latency: Latency) -> dict[str, Any]:
    # NaN (no query was reranked) is not JSON: null instead.
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in dataclasses.asdict(latency).items()}


def write_json(report: Report, path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    path.write_text(json.dumps(to_json(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- Markdown

def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w)
                                 for c, w, a in zip(cells, widths, align)) + " |"

    rule = "|" + "|".join((":" + "-" * (w + 1)) if a == "l" else ("-" * (w + 1) + ":")
                          for w, a in zip(widths, align)) + "|"
    return [line(header), rule, *(line(r) for r in rows)]


def markdown(report: Report) -> str:
    """Summary table (means, deltas marked * when p < 0.05, added latency) and a detail table."""
    with_cached = any(c.cached_latency is not None for c in report.candidates)
    head = ["system", *report.metrics, "added p50 ms", "added p99 ms", "fallbacks"]
    head += ["cache-served p50 ms", "cache-served p99 ms"] if with_cached else []
    rows = [[report.baseline.name, *(f"{report.baseline.mean(m):.4f}" for m in report.metrics), "0", "0", "–",
             *(["–", "–"] if with_cached else [])]]
    detail = []
    for cand in report.candidates:
        cells = []
        for c in report.comparisons(cand):
            cells.append(f"{c.candidate:.4f} ({c.delta:+.4f}{'*' if c.significant else ''})")
            detail.append([cand.name, c.metric, f"{c.delta:+.4f}", f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]",
                           f"{c.p_value:.4f}", f"{c.wins}/{c.losses}/{c.ties}"])
        lat = cand.latency or Latency(math.nan, math.nan, math.nan, 0)
        row = [cand.name, *cells, _ms(lat.p50_ms), _ms(lat.p99_ms), str(cand.fallbacks)]
        if with_cached:
            cached = cand.cached_latency or Latency(math.nan, math.nan, math.nan, 0)
            row += [_ms(cached.p50_ms), _ms(cached.p99_ms)]
        rows.append(row)
    lines = [f"**{report.collection}** — {report.num_queries} judged queries, top {report.depth} "
             f"from {report.engine}; {report.gain_note}.", *report.notes, ""]
    lines += _table(head, rows, "l" + "r" * (len(head) - 1))
    if report.latency_method:
        lines += ["", report.latency_method]
    lines += ["", "`*` p < 0.05. Deltas are against engine order, paired by query:", ""]
    lines += _table(["system", "metric", "delta", "95% CI", "p", "wins/losses/ties"], detail, "llrrrr")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- PNG

def plot(report: Report, path: str | os.PathLike, *, metric: str | None = None) -> pathlib.Path:
    """Per-query delta of each configuration (left) and quality vs. added latency (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = metric or report.metrics[0]
    n = max(1, len(report.candidates))
    fig = plt.figure(figsize=(12, 2.2 + 2.0 * n), dpi=110)
    grid = fig.add_gridspec(n, 2, width_ratios=[1.6, 1], wspace=0.28, hspace=0.75)
    base = report.baseline.per_query[metric]
    first = None
    for row, cand in enumerate(report.candidates):
        ax = fig.add_subplot(grid[row, 0], sharey=first)  # one scale: rows compare at a glance
        first = first or ax
        deltas = sorted(cand.per_query[metric][q] - base[q] for q in base)
        colors = ["#2a9d4b" if d > 1e-12 else "#c0392b" if d < -1e-12 else "#999999" for d in deltas]
        ax.bar(range(len(deltas)), deltas, width=1.0, color=colors, linewidth=0)
        ax.axhline(0, color="black", linewidth=0.6)
        wins = sum(d > 1e-12 for d in deltas)
        losses = sum(d < -1e-12 for d in deltas)
        ax.set_title(f"{cand.name}\nmean Δ {sum(deltas) / len(deltas):+.3f}; {wins} better, {losses} worse, "
                     f"{len(deltas) - wins - losses} same",
                     fontsize=9, loc="left")
        ax.set_ylabel(f"Δ {metric}", fontsize=8)
        ax.set_xlim(-0.5, len(deltas) - 0.5)
        ax.tick_params(labelsize=7)
        if row == n - 1:
            ax.set_xlabel("queries, sorted by delta", fontsize=8)
    if not report.candidates:
        fig.add_subplot(grid[0, 0]).text(0.5, 0.5, "no rescoring configuration", ha="center")

    ax = fig.add_subplot(grid[:, 1])
    ax.scatter([0], [report.baseline.mean(metric)], marker="s", color="black", zorder=3, label=report.baseline.name)
    for i, cand in enumerate(report.candidates):
        lat = cand.latency
        x = lat.p50_ms if lat and not math.isnan(lat.p50_ms) else 0.0
        y = cand.mean(metric)
        star = "*" if compare(metric, base, cand.per_query[metric]).significant else ""
        xerr = [[0], [max(lat.p99_ms - x, 0)]] if lat and not math.isnan(lat.p99_ms) else None
        # Full names go in the legend below: long labels next to points run off the axes.
        ax.errorbar([x], [y], xerr=xerr, fmt="o", color=f"C{i}", capsize=3, zorder=3, label=f"{cand.name}{star}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.09), frameon=False,
              title="* p < 0.05 vs. engine order", title_fontsize=7)
    ax.set_xlabel("added latency per query, ms (dot p50, bar to p99)"
                  + ("\nscore cache bypassed: every pair computed" if report.latency_method else ""), fontsize=8)
    ax.set_ylabel(f"mean {metric}", fontsize=8)
    ax.set_title(f"quality vs. added latency ({report.num_queries} queries)", fontsize=9, loc="left")
    ax.set_xlim(left=-0.05 * max([1.0] + [c.latency.p99_ms for c in report.candidates
                                          if c.latency and not math.isnan(c.latency.p99_ms)]))
    ax.margins(x=0.25, y=0.2)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    fig.suptitle(f"{report.collection}: engine order vs. rescored, top {report.depth} from {report.engine}",
                 fontsize=10, x=0.01, ha="left")
    if report.latency_method:
        import textwrap

        fig.text(0.01, -0.02, textwrap.fill(report.latency_method, 160), fontsize=7, ha="left", va="top")
    path = pathlib.Path(path)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def write_all(report: Report, out_dir: str | os.PathLike) -> dict[str, pathlib.Path]:
    """report.json, report.md and report.png in `out_dir` (created if needed)."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "report.md"
    md.write_text(markdown(report), encoding="utf-8")
    return {"json": write_json(report, out / "report.json"), "markdown": md, "plot": plot(report, out / "report.png")}
