"""The impression/feedback event log: what it writes, what it refuses, and that it never blocks."""
from __future__ import annotations

import io
import json
import threading

import pytest

from rescore_sidecar.connectors.feedback_log import (
    REASON_BAD_FEEDBACK, REASON_EXPIRED_IMPRESSION, REASON_UNKNOWN_DOC, REASON_UNKNOWN_IMPRESSION,
    FeedbackError, FeedbackLog, JsonLinesFile, StreamSink, open_sink)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def read_events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_impressions_and_feedback_are_json_lines_in_the_documented_schema(tmp_path):
    path = tmp_path / "events.jsonl"
    clock = Clock()
    with FeedbackLog(JsonLinesFile(path), clock=clock) as log:
        shown = log.impression("exp1", ["bm25", "model"], ["d2", "d1"], teams={"d1": "bm25", "d2": "model"},
                               impression_id="imp-1")
        split = log.impression("exp2", ["bm25", "model"], ["d9"], arm="model")
        clock.now += 3
        result = log.feedback("imp-1", ["d1"])
    assert shown.id == "imp-1" and result.accepted == ("d1",) and result.duplicate == ()
    impression, impression2, feedback = read_events(path)
    assert impression == {"v": 1, "type": "impression", "id": "imp-1", "experiment": "exp1", "mode": "interleave",
                          "arms": ["bm25", "model"], "doc_ids": ["d2", "d1"], "teams": {"d2": "model", "d1": "bm25"},
                          "ts": 1000.0}
    assert impression2["mode"] == "split" and impression2["arm"] == "model" and "teams" not in impression2
    assert len(impression2["id"]) == 32  # a random id when none is given
    assert feedback == {"v": 1, "type": "feedback", "impression_id": "imp-1", "experiment": "exp1",
                        "clicked": ["d1"], "ts": 1003.0}


def test_repeated_clicks_are_logged_once(tmp_path):
    path = tmp_path / "events.jsonl"
    with FeedbackLog(JsonLinesFile(path)) as log:
        log.impression("e", ["a", "b"], ["d1", "d2"], arm="a", impression_id="i")
        log.feedback("i", ["d1"])
        again = log.feedback("i", ["d1", "d2", "d2"])
        third = log.feedback("i", ["d2"])
    assert again.accepted == ("d2",) and again.duplicate == ("d1",)
    assert third.accepted == () and third.duplicate == ("d2",)
    assert [e["clicked"] for e in read_events(path) if e["type"] == "feedback"] == [["d1"], ["d2"]]


@pytest.mark.parametrize("impression_id, clicked, reason", [
    ("nope", ["d1"], REASON_UNKNOWN_IMPRESSION),
    ("i", ["d1", "d7"], REASON_UNKNOWN_DOC),
    ("i", [], REASON_BAD_FEEDBACK),
    ("i", "d1", REASON_BAD_FEEDBACK),
    ("i", [3], REASON_BAD_FEEDBACK),
    ("", ["d1"], REASON_BAD_FEEDBACK),
])
def test_bad_feedback_is_refused_with_a_reason_and_writes_nothing(tmp_path, impression_id, clicked, reason):
    path = tmp_path / "events.jsonl"
    with FeedbackLog(JsonLinesFile(path)) as log:
        log.impression("e", ["a", "b"], ["d1", "d2"], teams={"d1": "a", "d2": "b"}, impression_id="i")
        with pytest.raises(FeedbackError) as caught:
            log.feedback(impression_id, clicked)
    assert caught.value.reason == reason and str(caught.value)
    assert [e["type"] for e in read_events(path)] == ["impression"]
    if reason == REASON_UNKNOWN_DOC:
        assert "d7" in str(caught.value)


def test_feedback_after_the_time_to_live_is_expired_and_old_impressions_are_forgotten(tmp_path):
    clock = Clock()
    with FeedbackLog(JsonLinesFile(tmp_path / "e.jsonl"), ttl_seconds=60, max_impressions=2, clock=clock) as log:
        log.impression("e", ["a", "b"], ["d1"], arm="a", impression_id="old")
        clock.now += 61
        for i in range(3):
            log.impression("e", ["a", "b"], ["d1"], arm="b", impression_id=f"new{i}")
        with pytest.raises(FeedbackError) as expired:
            log.feedback("old", ["d1"])
        with pytest.raises(FeedbackError) as forgotten:
            log.feedback("new0", ["d1"])  # pushed out by max_impressions
        assert log.feedback("new2", ["d1"]).accepted == ("d1",)
    assert expired.value.reason == REASON_EXPIRED_IMPRESSION
    assert forgotten.value.reason == REASON_UNKNOWN_IMPRESSION


@pytest.mark.parametrize("kwargs", [
    {"teams": {"d1": "a"}, "arm": "a"}, {}, {"teams": {"d1": "c"}}, {"teams": {}}, {"arm": "z"}])
def test_malformed_impressions_are_refused(kwargs):
    with FeedbackLog(StreamSink(io.StringIO())) as log, pytest.raises(ValueError):
        log.impression("e", ["a", "b"], ["d1"], **kwargs)


class BlockedSink:
    """A sink stuck until released: the log must neither block the caller nor grow without bound."""
    def __init__(self) -> None:
        self.release, self.entered = threading.Event(), threading.Event()
        self.lines: list[str] = []

    def write(self, lines):
        self.entered.set()
        self.release.wait(10)
        self.lines.extend(lines)

    def close(self):
        pass


def test_a_stuck_sink_never_blocks_the_caller_and_overflow_is_dropped_and_counted():
    sink = BlockedSink()
    log = FeedbackLog(sink, queue_size=5)
    log.impression("e", ["a", "b"], ["d0"], arm="a", impression_id="first")
    assert sink.entered.wait(5)  # the writer holds "first" inside the stuck sink
    for i in range(20):          # returns at once although nothing can be written
        log.impression("e", ["a", "b"], ["d0"], arm="a", impression_id=f"i{i}")
    assert log.dropped == 15
    sink.release.set()
    log.close()
    assert len(sink.lines) == 6 and json.loads(sink.lines[0])["id"] == "first"


def test_a_failing_sink_is_counted_and_the_writer_keeps_going():
    class Flaky(BlockedSink):
        def write(self, lines):
            if any('"boom"' in line for line in lines):
                raise OSError("disk full")
            self.lines.extend(lines)

    sink = Flaky()
    log = FeedbackLog(sink)
    log.impression("boom", ["a", "b"], ["d0"], arm="a")
    log.close()
    log2 = FeedbackLog(sink)
    log2.impression("fine", ["a", "b"], ["d0"], arm="a")
    log2.close()
    assert log.write_errors == 1 and len(sink.lines) == 1


def test_stream_sink_writes_to_stdout_by_default(capsys):
    with FeedbackLog() as log:
        log.impression("e", ["a", "b"], ["d0"], arm="b", impression_id="x")
    assert json.loads(capsys.readouterr().out)["id"] == "x"


def test_open_sink_picks_stdout_or_a_file(tmp_path, capsys):
    for target in ("-", str(tmp_path / "log.jsonl")):
        with FeedbackLog(open_sink(target)) as log:
            log.impression("e", ["a", "b"], ["d0"], arm="a", impression_id=target)
    assert json.loads(capsys.readouterr().out)["id"] == "-"
    assert json.loads((tmp_path / "log.jsonl").read_text())["id"] == str(tmp_path / "log.jsonl")


def test_an_impression_id_is_recorded_once_and_events_after_close_are_dropped(tmp_path):
    log = FeedbackLog(JsonLinesFile(tmp_path / "e.jsonl"))
    log.impression("e", ["a", "b"], ["d0"], arm="a", impression_id="same")
    log.feedback("same", ["d0"])
    with pytest.raises(ValueError, match="already recorded"):
        log.impression("e", ["a", "b"], ["d0"], arm="b", impression_id="same")
    log.close()
    log.impression("e", ["a", "b"], ["d0"], arm="a", impression_id="late")
    assert log.dropped == 1
    assert [e.get("id") for e in read_events(tmp_path / "e.jsonl")] == ["same", None]
