"""The verdict `finetune --eval` prints under its report: paired comparisons, and a warning only when
the fine-tuned model is significantly worse than engine order or the start model."""
from __future__ import annotations

import random

from rescore_sidecar.tools.eval.report import SystemRun
from rescore_sidecar.tools.finetune.cli import verdict


def _run(name: str, values: list[float]) -> SystemRun:
    return SystemRun(name, {"ndcg@10": {f"q{i}": v for i, v in enumerate(values)}})


def _noisy(base: list[float], shift: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [min(1.0, max(0.0, v + shift + rng.uniform(-0.05, 0.05))) for v in base]


BASE = [random.Random(0).uniform(0.2, 0.6) for _ in range(60)]


def test_a_better_model_gets_no_warning():
    lines = verdict(_run("engine", BASE), _run("start", _noisy(BASE, 0.05, 1)), _run("tuned", _noisy(BASE, 0.15, 2)))
    assert len(lines) == 2
    assert lines[0].startswith("held-out ndcg@10: fine-tuned") and "vs engine order" in lines[0]
    assert "vs the start model" in lines[1]
    assert not any("WARNING" in line for line in lines)


def test_a_model_worse_than_engine_order_is_flagged():
    lines = verdict(_run("engine", BASE), _run("start", _noisy(BASE, 0.05, 1)), _run("tuned", _noisy(BASE, -0.2, 2)))
    assert lines[-1].startswith("WARNING") and "engine order and the start model" in lines[-1]
    assert "do not serve it" in lines[-1]


def test_worse_than_the_start_only_names_the_start():
    lines = verdict(_run("engine", BASE), _run("start", _noisy(BASE, 0.3, 1)), _run("tuned", _noisy(BASE, 0.1, 2)))
    assert lines[-1].startswith("WARNING") and "than the start model" in lines[-1] and "engine order" not in lines[-1]
