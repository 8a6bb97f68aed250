"""Team-draft interleaving (Radlinski, Kurup and Joachims, CIKM 2008), without I/O.

Two rankers' lists of doc ids become one list shown to the user: in each round the team with
fewer picks so far (a coin decides when they have as many) adds its highest-ranked doc not yet
shown. Each shown doc belongs to the team that picked it; a click credits that team, and the team
with more clicked docs wins the impression (Chapelle et al., TOIS 2012, for why this detects the
better ranker with far fewer impressions than a split test).

Deterministic for (seed, lists): the coins come from `random.Random(seed)`, so an impression can
be replayed from its seed (the impression id, say) and the engine's hits.
"""
from __future__ import annotations

import dataclasses
import enum
import random
from typing import Iterable, Iterator, Mapping, Sequence

TEAM_A, TEAM_B = "A", "B"


class Outcome(str, enum.Enum):
    """One impression's verdict: which team's docs got more clicks."""
    WIN_A = "win_a"
    WIN_B = "win_b"
    TIE = "tie"            # as many clicks for both teams (at least one click)
    NO_CLICK = "no_click"  # nothing clicked: says nothing about the rankers


@dataclasses.dataclass(frozen=True)
class Interleaving:
    """The merged list, best first, and the team (TEAM_A / TEAM_B) that contributed each doc."""
    doc_ids: tuple[str, ...]
    teams: tuple[str, ...]

    def team_of(self) -> dict[str, str]:
        """doc id -> team, in rank order."""
        return dict(zip(self.doc_ids, self.teams))


def team_draft(ranking_a: Sequence[str], ranking_b: Sequence[str], seed: int | str | bytes,
               *, length: int | None = None) -> Interleaving:
    """Team-draft interleaving of two rankings with coins drawn from `random.Random(seed)`.

    Stops when either ranking has nothing left that is not already shown, or at `length` docs.
    When both rankings order the same docs (two rerankings of one set of hits) that is every doc.
    """
    rng = random.Random(seed)
    return team_draft_with_coins(ranking_a, ranking_b, (rng.random() < 0.5 for _ in iter(int, 1)),
                                 length=length)


def team_draft_with_coins(ranking_a: Sequence[str], ranking_b: Sequence[str], coins: Iterable[bool],
                          *, length: int | None = None) -> Interleaving:
    """Team-draft interleaving with explicit coins (True: team A picks first in a tied round).

    One coin is used per round in which the teams are level (every other pick), so a list of n
    docs uses ceil(n / 2) coins; the simulator enumerates them to get exact probabilities.
    """
    if length is not None and length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    limit = len(set(ranking_a) | set(ranking_b)) if length is None else length
    coin = iter(coins)
    shown: set[str] = set()
    doc_ids: list[str] = []
    teams: list[str] = []
    cursors = {TEAM_A: _unshown(ranking_a, shown), TEAM_B: _unshown(ranking_b, shown)}
    picks = {TEAM_A: 0, TEAM_B: 0}
    while len(doc_ids) < limit:
        if picks[TEAM_A] == picks[TEAM_B]:
            team = TEAM_A if next(coin) else TEAM_B
        else:
            team = TEAM_A if picks[TEAM_A] < picks[TEAM_B] else TEAM_B
        doc = next(cursors[team], None)
        if doc is None:  # this team has nothing new to add: the interleaving ends here
            break
        shown.add(doc)
        doc_ids.append(doc)
        teams.append(team)
        picks[team] += 1
    return Interleaving(tuple(doc_ids), tuple(teams))


def _unshown(ranking: Sequence[str], shown: set[str]) -> Iterator[str]:
    """The ranking's docs in order, skipping those shown by the time each is asked for."""
    return (doc for doc in ranking if doc not in shown)


def credit(teams: Mapping[str, str], clicked: Iterable[str]) -> Outcome:
    """The impression's outcome from its teams (doc id -> team) and the clicked doc ids.

    Each distinct clicked doc counts once for its team; clicked ids not in `teams` are ignored
    (validating them is the caller's job: the feedback log refuses them).
    """
    counts = {TEAM_A: 0, TEAM_B: 0}
    for doc in set(clicked):
        team = teams.get(doc)
        if team in counts:
            counts[team] += 1
    if counts[TEAM_A] == counts[TEAM_B]:
        return Outcome.TIE if counts[TEAM_A] else Outcome.NO_CLICK
    return Outcome.WIN_A if counts[TEAM_A] > counts[TEAM_B] else Outcome.WIN_B


# ---------------------------------------------------------------- balanced interleaving (optional)

def balanced(ranking_a: Sequence[str], ranking_b: Sequence[str], seed: int | str | bytes,
             *, length: int | None = None) -> tuple[str, ...]:
    """Balanced interleaving (Joachims 2003): the lists take turns, one coin for who starts.

    Every prefix of the result holds the top ka of A and the top kb of B with |ka - kb| <= 1. It
    has no teams: `balanced_credit` needs both rankings to score clicks.
    """
    if length is not None and length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    a_first = random.Random(seed).random() < 0.5
    limit = len(set(ranking_a) | set(ranking_b)) if length is None else length
    shown: list[str] = []
    seen: set[str] = set()
    ka = kb = 0
    while ka < len(ranking_a) and kb < len(ranking_b) and len(shown) < limit:
        if ka < kb or (ka == kb and a_first):
            doc, ka = ranking_a[ka], ka + 1
        else:
            doc, kb = ranking_b[kb], kb + 1
        if doc not in seen:
            seen.add(doc)
            shown.append(doc)
    return tuple(shown)


def balanced_credit(ranking_a: Sequence[str], ranking_b: Sequence[str], shown: Sequence[str],
                    clicked: Iterable[str]) -> Outcome:
    """Joachims' rule: with k the smallest depth at which A's or B's top k holds the lowest clicked
    doc, the list with more clicked docs in its top k wins."""
    clicks = {doc for doc in clicked if doc in set(shown)}
    if not clicks:
        return Outcome.NO_CLICK
    lowest = max(clicks, key=list(shown).index)
    depth = min(_rank(ranking_a, lowest), _rank(ranking_b, lowest))
    hits_a = len(clicks & set(ranking_a[:depth]))
    hits_b = len(clicks & set(ranking_b[:depth]))
    if hits_a == hits_b:
        return Outcome.TIE
    return Outcome.WIN_A if hits_a > hits_b else Outcome.WIN_B


def _rank(ranking: Sequence[str], doc: str) -> int:
    """1-based rank of `doc`, or past the end when absent."""
    try:
        return list(ranking).index(doc) + 1
    except ValueError:
        return len(ranking) + 1
