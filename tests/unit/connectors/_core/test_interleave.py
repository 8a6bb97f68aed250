"""Team-draft interleaving: its defining properties over arbitrary rankings, and click credit."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings, strategies as st

from rescore_sidecar.connectors._core.interleave import (
    TEAM_A, TEAM_B, Outcome, balanced, balanced_credit, credit, team_draft, team_draft_with_coins)

doc_ids = st.text(alphabet="abcdefghij", min_size=1, max_size=2)
rankings = st.lists(doc_ids, max_size=25, unique=True)
seeds = st.one_of(st.integers(), st.text(max_size=20))


@settings(max_examples=100, deadline=None)
@given(rankings, rankings, seeds)
def test_every_doc_comes_from_its_team_list_once_and_prefixes_are_balanced(a, b, seed):
    merged = team_draft(a, b, seed)
    assert len(merged.doc_ids) == len(merged.teams)
    assert len(set(merged.doc_ids)) == len(merged.doc_ids)
    for doc, team in zip(merged.doc_ids, merged.teams):
        assert doc in (a if team == TEAM_A else b)
    for n in range(len(merged.teams) + 1):
        prefix = merged.teams[:n]
        assert abs(prefix.count(TEAM_A) - prefix.count(TEAM_B)) <= 1


@settings(max_examples=100, deadline=None)
@given(rankings, rankings, seeds)
def test_each_pick_is_the_team_best_doc_not_yet_shown(a, b, seed):
    merged = team_draft(a, b, seed)
    shown: set[str] = set()
    for doc, team in zip(merged.doc_ids, merged.teams):
        source = a if team == TEAM_A else b
        assert doc == next(d for d in source if d not in shown)
        shown.add(doc)


@settings(max_examples=100, deadline=None)
@given(st.permutations([f"d{i}" for i in range(12)]), st.randoms(use_true_random=False), seeds)
def test_two_orders_of_the_same_hits_interleave_all_of_them(a, rnd, seed):
    b = list(a)
    rnd.shuffle(b)
    merged = team_draft(a, b, seed)
    assert sorted(merged.doc_ids) == sorted(a)


@settings(max_examples=100, deadline=None)
@given(rankings, rankings, seeds, st.integers(min_value=0, max_value=30))
def test_deterministic_for_seed_and_lists_and_length_cuts_a_prefix(a, b, seed, length):
    full = team_draft(a, b, seed)
    assert team_draft(list(a), list(b), seed) == full
    cut = team_draft(a, b, seed, length=length)
    assert cut.doc_ids == full.doc_ids[:length] and cut.teams == full.teams[:length]


def test_seeds_change_the_merge_and_both_teams_lead_sometimes():
    a, b = [f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)]
    firsts = {team_draft(a, b, f"impression-{i}").teams[0] for i in range(64)}
    assert firsts == {TEAM_A, TEAM_B}


def test_coins_enumerate_every_merge_of_disjoint_lists():
    a, b = ["a1", "a2", "a3", "a4"], ["b1", "b2", "b3", "b4"]
    merges = {team_draft_with_coins(a, b, coins).doc_ids for coins in itertools.product((True, False), repeat=4)}
    assert len(merges) == 16  # one coin per level round, each changing the list
    assert team_draft_with_coins(a, b, [True] * 4).doc_ids == ("a1", "b1", "a2", "b2", "a3", "b3", "a4", "b4")


def test_identical_rankings_interleave_to_the_same_order():
    a = ["x", "y", "z", "w"]
    assert team_draft(a, a, 7).doc_ids == tuple(a)


def test_credit_counts_distinct_clicked_docs_per_team():
    teams = {"a1": TEAM_A, "b1": TEAM_B, "a2": TEAM_A, "b2": TEAM_B}
    assert credit(teams, ["a1", "a2", "b1"]) is Outcome.WIN_A
    assert credit(teams, ["b2"]) is Outcome.WIN_B
    assert credit(teams, ["a1", "b1"]) is Outcome.TIE
    assert credit(teams, ["b1", "b1", "a1"]) is Outcome.TIE  # a repeated click counts once
    assert credit(teams, []) is Outcome.NO_CLICK
    assert credit(teams, ["elsewhere"]) is Outcome.NO_CLICK


def test_negative_length_is_refused():
    with pytest.raises(ValueError, match="length"):
        team_draft(["a"], ["b"], 1, length=-1)


@settings(max_examples=100, deadline=None)
@given(rankings, rankings, seeds)
def test_balanced_prefixes_hold_the_top_of_both_lists_within_one(a, b, seed):
    shown = balanced(a, b, seed)
    assert len(set(shown)) == len(shown) and all(d in a or d in b for d in shown)
    assert balanced(a, b, seed) == shown
    for n in range(1, len(shown) + 1):
        prefix = set(shown[:n])
        # some top ka of A and top kb of B, level within one, make up exactly this prefix
        assert any(prefix == set(a[:ka]) | set(b[:kb])
                   for ka in range(len(a) + 1) for kb in (ka - 1, ka, ka + 1) if 0 <= kb <= len(b))


def test_balanced_credit_follows_joachims_rule():
    a, b = ["d1", "d2", "d3", "d4"], ["d2", "d5", "d1", "d6"]
    shown = balanced(a, b, 0)
    assert shown == ("d2", "d1", "d5", "d3", "d6")  # seed 0: B starts; it ends when B is used up
    assert balanced_credit(a, b, shown, ["d3"]) is Outcome.WIN_A       # k = 3: A's top 3 holds d3, B's not
    assert balanced_credit(a, b, shown, ["d5"]) is Outcome.WIN_B       # k = 2: only B's top 2 holds d5
    assert balanced_credit(a, b, shown, ["d1", "d2"]) is Outcome.TIE   # k = 2: both tops hold both
    assert balanced_credit(a, b, shown, []) is Outcome.NO_CLICK
