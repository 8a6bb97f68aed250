"""Collection readers: the simple JSONL/TREC format and the Cranfield 1400 files."""
from __future__ import annotations

import pathlib

import pytest

from rescore_sidecar.tools.eval.collection import (
    Collection, CollectionError, Document, load_collection, read_cranfield, read_simple,
    shared_data_dir, write_simple,
)

CRANFIELD = shared_data_dir() / "cranfield"
needs_cranfield = pytest.mark.skipif(
    not (CRANFIELD / "cran.all.1400").is_file(),
    reason=f"Cranfield data not found at {CRANFIELD} (set RESCORE_DATA_DIR to the folder holding cranfield/)")


@pytest.fixture(scope="module")
def cranfield() -> Collection:
    return read_cranfield(CRANFIELD)


@needs_cranfield
def test_cranfield_sizes(cranfield: Collection) -> None:
    assert len(cranfield.documents) == 1400
    assert len(cranfield.queries) == 225
    assert len(cranfield.qrels) == 225
    assert sum(len(j) for j in cranfield.qrels.values()) == 1837
    assert set(cranfield.documents) == {str(i) for i in range(1, 1401)}


@needs_cranfield
def test_cranfield_queries_are_numbered_by_position_not_by_dot_i(cranfield: Collection) -> None:
    # cran.qry: 3rd record is ".I 004", 4th ".I 008", 100th ".I 149", last ".I 365".
    assert cranfield.queries["3"].startswith("what problems of heat conduction in composite slabs")
    assert cranfield.queries["4"].startswith("can a criterion be developed to show empirically")
    assert cranfield.queries["100"].startswith("what are the effects of initial imperfections on the elastic buckling")
    assert cranfield.queries["225"].startswith("what design factors can be used to control lift-drag ratios")


@needs_cranfield
def test_cranfield_judgements_land_on_the_right_query(cranfield: Collection) -> None:
    # Hand-checked: qrels query 3's relevant documents are about heat conduction in composite slabs.
    assert {"5", "6", "90", "91"} <= {d for d, g in cranfield.qrels["3"].items() if g > 0}
    assert "composite slab" in cranfield.documents["90"].title
    # Query 4 (".I 008", chemically reacting gas): "4 166 3" -> gain 2, "4 236 3" -> gain 2.
    assert cranfield.qrels["4"]["166"] == 2 and cranfield.documents["166"].title.startswith("flow of chemically reacting gas")
    # Query 100 (".I 149", buckling of cylinders): "100 822 2" -> gain 3; doc 822 is on buckling of thin cylinders.
    assert cranfield.qrels["100"]["822"] == 3
    assert "buckling of thin cylinders" in cranfield.documents["822"].title


@needs_cranfield
def test_cranfield_grades_become_gains(cranfield: Collection) -> None:
    assert cranfield.qrels["1"]["184"] == 3      # "1 184 2" -> 5 - 2
    assert cranfield.qrels["1"]["13"] == 1       # "1 13 4"  -> 5 - 4
    assert cranfield.qrels["1"]["486"] == 0      # "1 486 -1" -> judged not relevant
    gains = [g for j in cranfield.qrels.values() for g in j.values()]
    assert set(gains) == {0, 1, 2, 3, 4}
    assert gains.count(0) == 225
    assert "5 - grade" in cranfield.gain_note


@needs_cranfield
def test_cranfield_text_is_clean(cranfield: Collection) -> None:
    doc = cranfield.documents["1"]
    assert doc.title == "experimental investigation of the aerodynamics of a wing in a slipstream ."
    assert doc.text.startswith(doc.title)
    assert "\r" not in doc.text and "  " not in doc.text
    assert doc.full_text() == doc.text  # the abstract repeats the title: not sent twice
    assert len(cranfield.judged_queries()) == 225


@needs_cranfield
def test_load_collection_detects_cranfield() -> None:
    assert load_collection(CRANFIELD).name == "cranfield"


def _tiny() -> Collection:
    docs = {"a": Document("a", "Title A", "text about wings"), "b": Document("b", "", "only text")}
    return Collection("tiny", docs, {"q1": "wings", "q2": "nothing"}, {"q1": {"a": 2, "b": 0}})


@pytest.mark.parametrize("compress", [False, True])
def test_simple_format_round_trip(tmp_path: pathlib.Path, compress: bool) -> None:
    folder = write_simple(_tiny(), tmp_path / "tiny", compress=compress)
    back = load_collection(folder)
    assert back.documents == _tiny().documents
    assert back.queries == _tiny().queries
    assert back.qrels == {"q1": {"a": 2, "b": 0}}
    assert back.judged_queries() == ["q1"]


def test_simple_format_negative_grade_is_not_relevant(tmp_path: pathlib.Path) -> None:
    folder = write_simple(_tiny(), tmp_path / "c")
    (folder / "qrels.txt").write_text("q1 0 a -1\nq1 0 b 3\n")
    assert read_simple(folder).qrels == {"q1": {"a": 0, "b": 3}}


@pytest.mark.parametrize("file,content,message", [
    ("corpus.jsonl", '{"id": "a", "text": "x"}\nnot json\n', "corpus.jsonl:2: not JSON"),
    ("corpus.jsonl", '{"id": "a"}\n', "field 'text' missing"),
    ("corpus.jsonl", '{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "duplicate document id 'a'"),
    ("qrels.txt", "q1 a 1\n", "qrels.txt:1: expected 'query_id 0 doc_id grade'"),
    ("qrels.txt", "q1 0 a high\n", "grade 'high' is not an integer"),
    ("qrels.txt", "q9 0 a 1\n", "queries not in the query file: ['q9']"),
    ("qrels.txt", "q1 0 zz 1\n", "documents not in the corpus: ['zz']"),
])
def test_simple_format_errors_name_file_and_line(tmp_path: pathlib.Path, file: str, content: str, message: str) -> None:
    folder = write_simple(_tiny(), tmp_path / "c")
    (folder / file).write_text(content)
    with pytest.raises(CollectionError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        read_simple(folder)


def test_missing_folder_and_files_are_clear(tmp_path: pathlib.Path) -> None:
    with pytest.raises(CollectionError, match="not a folder"):
        load_collection(tmp_path / "nope")
    with pytest.raises(CollectionError, match="no corpus.jsonl"):
        load_collection(tmp_path)
    (tmp_path / "corpus.jsonl").write_text('{"id": "a", "text": "x"}\n')
    with pytest.raises(CollectionError, match="missing queries.jsonl"):
        load_collection(tmp_path)


def test_subset_keeps_documents_and_rejects_unknown_queries() -> None:
    sub = _tiny().subset(["q1"])
    assert list(sub.queries) == ["q1"] and len(sub.documents) == 2
    with pytest.raises(CollectionError, match="unknown query ids"):
        _tiny().subset(["q7"])


def test_full_text_joins_title_and_text() -> None:
    assert Document("x", "Wings", "lift and drag").full_text() == "Wings\nlift and drag"
    assert Document("x", "", "lift").full_text() == "lift"
    assert Document("x", "Only title", "").full_text() == "Only title"


def test_shipped_sample_is_small_and_consistent() -> None:
    from rescore_sidecar.tools.eval.sample import SAMPLE_DIR, load_sample

    sample = load_sample()
    assert (len(sample.documents), len(sample.queries)) == (300, 30)
    assert sample.judged_queries() == list(sample.queries)
    assert sum(p.stat().st_size for p in SAMPLE_DIR.iterdir()) < 150_000


@needs_cranfield
def test_shipped_sample_matches_cranfield(cranfield: Collection) -> None:
    from rescore_sidecar.tools.eval.sample import build_sample, load_sample

    shipped, rebuilt = load_sample(), build_sample(cranfield)
    assert shipped.documents == rebuilt.documents
    assert shipped.queries == rebuilt.queries and shipped.qrels == rebuilt.qrels
