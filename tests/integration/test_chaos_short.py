"""The chaos harness (bench/chaos.py) with tiny phases, on the session's OpenSearch node (the
engine_restart phase restarts it in place: same port, same data) and real sidecar and proxy
processes. Every phase must meet the goals: no search fails because of rescoring, rescoring
stays within budget + slack, reranking comes back in time after each fault.
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

pytestmark = pytest.mark.integration

CHAOS = pathlib.Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def _load_chaos():
    spec = importlib.util.spec_from_file_location("bench_chaos", CHAOS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_chaos_short(opensearch_node, tiny_cross_encoder):
    chaos = _load_chaos()
    settings = chaos.ChaosSettings(duration=4.0, rate=5.0, clients=2, open_seconds=2.0,
                                   model=str(tiny_cross_encoder), verbose=True)
    reports = chaos.run_chaos(settings, node=opensearch_node)
    print("\n" + chaos.table(reports))
    by = {(r.phase, r.path): r for r in reports}
    assert set(by) == {(p, path) for p in chaos.PHASES for path in ("connector", "proxy")}
    missed = {key: [g for g, ok in r.goals.items() if not ok] for key, r in by.items() if not r.ok}
    assert not missed, (missed, chaos.table(reports))
    for path in ("connector", "proxy"):
        # The faults were real: each one made searches fall back (or, for the engine, fail) ...
        assert by[("sigkill", path)].fallbacks, by[("sigkill", path)]
        assert {"timeout", "breaker_open"} & set(by[("sigstop", path)].fallbacks), by[("sigstop", path)]
        assert {"overloaded", "breaker_open", "timeout"} & set(by[("overload", path)].fallbacks)
        assert by[("engine_restart", path)].engine_failed > 0
        # ... while the baseline reranked and a dead replica out of two left reranking going.
        baseline = by[("baseline", path)]
        assert baseline.reranked >= baseline.sent // 2, baseline
        assert by[("replica_dies", path)].reranked > 0
        # One stalled replica of three: ejected (the fault was real), reranking never turned off.
        stalls = by[("replica_stalls", path)]
        assert stalls.breaker_changes.get("ejections", 0) >= 1 and "open" not in stalls.breaker_changes, stalls
    assert opensearch_node.health()["status"] in ("green", "yellow")


def test_chaos_short_sync_connector(opensearch_node, tiny_cross_encoder):
    """The sync connector (RescoringOpenSearch from worker threads) through a stall and a dead replica."""
    chaos = _load_chaos()
    settings = chaos.ChaosSettings(phases=("sigstop", "replica_dies"), duration=4.0, rate=5.0, clients=2,
                                   open_seconds=2.0, model=str(tiny_cross_encoder), connector="sync")
    reports = chaos.run_chaos(settings, node=opensearch_node)
    print("\n" + chaos.table(reports))
    missed = {(r.phase, r.path): [g for g, ok in r.goals.items() if not ok] for r in reports if not r.ok}
    assert not missed, (missed, chaos.table(reports))
    by = {(r.phase, r.path): r for r in reports}
    assert {"timeout", "breaker_open"} & set(by[("sigstop", "connector")].fallbacks)
    assert by[("replica_dies", "connector")].reranked > 0
