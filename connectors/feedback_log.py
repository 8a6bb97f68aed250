"""Impressions and click feedback as an append-only event log (JSON lines), for A/B reports.

The application records what it showed (`FeedbackLog.impression`) and later what the user clicked
(`FeedbackLog.feedback`). Both become one JSON object per line on a `Sink`: a file, stdout, or
anything with `write(lines)` and `close()`. Writing never blocks the caller: events go through a
bounded queue to one background thread; when the queue is full the event is dropped and counted
(`FeedbackLog.dropped`), because a search must not wait for a log. Impressions are remembered in
memory (bounded, with a time to live) so feedback can be checked against what was shown.

Event schema (`rescore-sidecar ab report` reads it; `"v": 1` marks this version):

    {"v": 1, "type": "impression", "id": "…", "experiment": "…", "mode": "interleave" | "split",
     "arms": ["<arm A>", "<arm B>"],          # interleave: team A, team B; split: the arms on test
     "doc_ids": ["d3", "d1", …],              # what was shown, best first
     "teams": {"d3": "<arm>", "d1": "<arm>"}, # interleave only: the arm that contributed each doc
     "arm": "<arm>",                          # split only: the arm this user saw
     "ts": 1733300000.123}                    # seconds since the epoch (UTC)
    {"v": 1, "type": "feedback", "impression_id": "…", "experiment": "…",
     "clicked": ["d1"],                       # doc ids newly clicked (a repeated click is not logged again)
     "ts": 1733300004.5}
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import queue
import sys
import threading
import time
import uuid
from typing import Callable, Iterable, Mapping, Protocol, Sequence, TextIO

SCHEMA_VERSION = 1
MODES = ("interleave", "split")


class Sink(Protocol):
    """Where event lines go. `write` gets lines without newlines; it runs on the writer thread."""
    def write(self, lines: Sequence[str]) -> None: ...
    def close(self) -> None: ...


class StreamSink:
    """JSON lines to an open text stream (stdout by default); the stream stays open on close."""
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def write(self, lines: Sequence[str]) -> None:
        stream = self._stream or sys.stdout
        stream.write("".join(line + "\n" for line in lines))
        stream.flush()

    def close(self) -> None:
        pass


class JsonLinesFile:
    """JSON lines appended to a file (made if missing), flushed after every batch."""
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, lines: Sequence[str]) -> None:
        self._file.write("".join(line + "\n" for line in lines))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def open_sink(target: str) -> Sink:
    """"-" or "stdout": JSON lines to stdout; `http(s)://[user:pw@]host:port/INDEX`: documents of
    that OpenSearch/Elasticsearch index (`index_sink.IndexSink`, `_bulk`); else a file to append to."""
    if target in ("-", "stdout"):
        return StreamSink()
    if target.startswith(("http://", "https://")):
        from rescore_sidecar.connectors.index_sink import IndexSink

        return IndexSink.from_target(target)
    return JsonLinesFile(target)


class FeedbackError(ValueError):
    """Feedback that cannot be accepted; `reason` is one of the REASON_* constants (map it to 4xx)."""
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


REASON_UNKNOWN_IMPRESSION = "unknown_impression"   # never seen, or pushed out of memory
REASON_EXPIRED_IMPRESSION = "expired_impression"   # older than the time to live
REASON_UNKNOWN_DOC = "doc_not_in_impression"       # a clicked id that was not shown
REASON_BAD_FEEDBACK = "bad_feedback"               # malformed: no clicks, ids not strings


@dataclasses.dataclass(frozen=True)
class Impression:
    id: str
    experiment: str
    mode: str
    arms: tuple[str, str]
    doc_ids: tuple[str, ...]
    teams: Mapping[str, str] | None   # interleave: doc id -> arm
    arm: str | None                   # split: the arm shown
    ts: float

    def event(self) -> dict:
        event = {"v": SCHEMA_VERSION, "type": "impression", "id": self.id, "experiment": self.experiment,
                 "mode": self.mode, "arms": list(self.arms), "doc_ids": list(self.doc_ids)}
        if self.teams is not None:
            event["teams"] = dict(self.teams)
        if self.arm is not None:
            event["arm"] = self.arm
        event["ts"] = self.ts
        return event


@dataclasses.dataclass(frozen=True)
class FeedbackResult:
    impression_id: str
    accepted: tuple[str, ...]    # clicks logged now
    duplicate: tuple[str, ...]   # clicks already logged for this impression (idempotent: not logged again)


@dataclasses.dataclass
class _Known:
    impression: Impression
    clicked: set[str]


class FeedbackLog:
    """Records impressions and feedback; checks feedback against remembered impressions.

    `max_impressions` bounds memory (the oldest are forgotten first); feedback for an impression
    older than `ttl_seconds` is refused as expired. `queue_size` bounds events waiting for the sink.
    """

    def __init__(self, sink: Sink | None = None, *, max_impressions: int = 100_000, ttl_seconds: float = 3600.0,
                 queue_size: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        if max_impressions < 1 or queue_size < 1 or ttl_seconds <= 0:
            raise ValueError("max_impressions and queue_size must be >= 1 and ttl_seconds > 0")
        self.sink = sink if sink is not None else StreamSink()
        self.max_impressions, self.ttl_seconds, self._clock = max_impressions, ttl_seconds, clock
        self._known: collections.OrderedDict[str, _Known] = collections.OrderedDict()
        # Ids that expired recently, so late feedback says "expired" rather than "unknown".
        self._expired: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=queue_size)
        self.dropped = 0        # events refused because the queue was full
        self.write_errors = 0   # batches the sink raised on (lost)
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="rescore-feedback-log", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------ recording

    def impression(self, experiment: str, arms: Sequence[str], doc_ids: Sequence[str], *,
                   teams: Mapping[str, str] | None = None, arm: str | None = None,
                   impression_id: str | None = None) -> Impression:
        """Remembers and logs one impression. Interleave: give `teams` (doc id -> arm, each an arm
        of `arms`); split: give `arm`. Returns it with its id (a random one unless given)."""
        arms = tuple(arms)
        if len(arms) != 2 or arms[0] == arms[1] or not all(isinstance(a, str) and a for a in arms):
            raise ValueError(f"arms must be two distinct non-empty names, got {list(arms)!r}")
        if (teams is None) == (arm is None):
            raise ValueError("give teams (interleaved impression) or arm (split impression), not both")
        doc_ids = tuple(doc_ids)
        if len(set(doc_ids)) != len(doc_ids):
            raise ValueError("doc_ids repeat an id")
        if teams is not None:
            teams = {doc: teams[doc] for doc in doc_ids if doc in teams}
            if set(teams) != set(doc_ids) or not set(teams.values()) <= set(arms):
                raise ValueError("teams must give every shown doc id one of the two arms")
        if arm is not None and arm not in arms:
            raise ValueError(f"arm {arm!r} is not one of {list(arms)!r}")
        now = self._clock()
        shown = Impression(impression_id or uuid.uuid4().hex, experiment, "interleave" if teams is not None
                           else "split", arms, doc_ids, teams, arm, now)
        with self._lock:
            self._forget_old(now)
            if shown.id in self._known:  # a second impression under one id would reset its clicks
                raise ValueError(f"impression id {shown.id!r} is already recorded")
            self._known[shown.id] = _Known(shown, set())
            while len(self._known) > self.max_impressions:
                self._known.popitem(last=False)
        self._enqueue(shown.event())
        return shown

    def feedback(self, impression_id: str, clicked: Sequence[str]) -> FeedbackResult:
        """Logs the clicks of a known impression; raises FeedbackError (nothing logged) when the
        impression is unknown or expired or a clicked id was not shown. Idempotent per click."""
        if not isinstance(impression_id, str) or not impression_id:
            raise FeedbackError(REASON_BAD_FEEDBACK, "impression_id must be a non-empty string")
        if isinstance(clicked, (str, bytes)) or not isinstance(clicked, Iterable):
            raise FeedbackError(REASON_BAD_FEEDBACK, "clicked must be a list of doc ids")
        clicked = list(clicked)
        if not clicked or not all(isinstance(doc, str) and doc for doc in clicked):
            raise FeedbackError(REASON_BAD_FEEDBACK, "clicked must be a non-empty list of non-empty doc id strings")
        now = self._clock()
        with self._lock:
            self._forget_old(now)
            known = self._known.get(impression_id)
            if known is None:
                if impression_id in self._expired:
                    raise FeedbackError(REASON_EXPIRED_IMPRESSION, f"impression {impression_id!r} expired (feedback "
                                        f"is accepted for {self.ttl_seconds:g} s after the search)")
                raise FeedbackError(REASON_UNKNOWN_IMPRESSION, f"no impression {impression_id!r} (unknown, or "
                                    "forgotten: feedback must reach the process that served the search)")
            shown = set(known.impression.doc_ids)
            strangers = [doc for doc in dict.fromkeys(clicked) if doc not in shown]
            if strangers:
                raise FeedbackError(REASON_UNKNOWN_DOC, f"clicked ids not shown in impression {impression_id!r}: "
                                    f"{strangers[:10]!r}")
            new = tuple(doc for doc in dict.fromkeys(clicked) if doc not in known.clicked)
            known.clicked.update(new)
            experiment = known.impression.experiment
        if new:
            self._enqueue({"v": SCHEMA_VERSION, "type": "feedback", "impression_id": impression_id,
                           "experiment": experiment, "clicked": list(new), "ts": now})
        return FeedbackResult(impression_id, new, tuple(doc for doc in dict.fromkeys(clicked) if doc not in new))

    def _forget_old(self, now: float) -> None:
        """Moves impressions past their time to live to the (bounded) expired set. Caller holds the lock."""
        while self._known:
            oldest_id, oldest = next(iter(self._known.items()))
            if now - oldest.impression.ts <= self.ttl_seconds:
                break
            del self._known[oldest_id]
            self._expired[oldest_id] = None
            while len(self._expired) > self.max_impressions:
                self._expired.popitem(last=False)

    # ------------------------------------------------------------ writing

    def _enqueue(self, event: dict) -> None:
        if self._closed:  # a search racing shutdown loses its event, not its answer
            with self._lock:
                self.dropped += 1
            return
        try:
            self._queue.put_nowait(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def _write_loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < 512:  # whatever else is waiting goes in the same write
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done = None in batch
            lines = [line for line in batch if line is not None]
            if lines:
                try:
                    self.sink.write(lines)
                except Exception:  # noqa: BLE001 - a failing sink loses lines, never the writer
                    self.write_errors += 1
            if done:
                return

    def close(self, timeout: float = 5.0) -> None:
        """Writes what is queued (waiting at most `timeout` s), then closes the sink."""
        if self._closed:
            return
        self._closed = True
        try:  # close may wait (for at most `timeout`): it is not on a search's path
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._writer.join(timeout)
        self.sink.close()

    def __enter__(self) -> "FeedbackLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
