"""Test collections: documents, queries and graded judgements, read from disk.

Two formats are read:

* **simple** — a folder with
  - `corpus.jsonl` (or `corpus.jsonl.gz`): one `{"id": str, "title": str (optional), "text": str}` per line;
  - `queries.jsonl` (or `.gz`): one `{"id": str, "text": str}` per line;
  - `qrels.txt`: TREC style, `query_id 0 doc_id grade` per line (whitespace separated). The grade is
    the gain used by nDCG; a grade of 0 or less means judged not relevant.
* **cranfield** — the classic Cranfield 1400 files (`cran.all.1400`, `cran.qry`, `cranqrel`), see
  `read_cranfield` for how its quirks are handled.

`load_collection(path)` picks the format from the files it finds.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import os
import pathlib
import re
from typing import Iterator, Mapping

# Gains are ints: qrels[query_id][doc_id] = gain; gain <= 0 is "judged, not relevant".
Qrels = Mapping[str, Mapping[str, int]]


class CollectionError(ValueError):
    """A collection file is missing or malformed; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str

    def full_text(self) -> str:
        """Title and text as one passage, without repeating a title the text already starts with."""
        title, text = self.title.strip(), self.text.strip()
        if not title or text.startswith(title):
            return text or title
        return f"{title}\n{text}" if text else title


@dataclasses.dataclass(frozen=True)
class Collection:
    name: str
    documents: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    # How judgement grades became gains, for the report.
    gain_note: str = "gain = grade from the qrels file; grade <= 0 is not relevant"

    def judged_queries(self) -> list[str]:
        """Ids of queries that have at least one relevant document, in query order.

        Queries with no relevant document cannot score above 0 on any metric; like trec_eval,
        the evaluation leaves them out.
        """
        return [q for q in self.queries if any(g > 0 for g in self.qrels.get(q, {}).values())]

    def subset(self, query_ids: list[str]) -> "Collection":
        """The same documents, restricted to the given queries (for quick runs on a slice)."""
        unknown = [q for q in query_ids if q not in self.queries]
        if unknown:
            raise CollectionError(f"{self.name}: unknown query ids {unknown[:5]}")
        return dataclasses.replace(
            self, queries={q: self.queries[q] for q in query_ids},
            qrels={q: dict(self.qrels.get(q, {})) for q in query_ids})


# ---------------------------------------------------------------- simple (JSONL + TREC qrels)

def _open_text(path: pathlib.Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _find(folder: pathlib.Path, stem: str) -> pathlib.Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise CollectionError(f"{folder}: missing {stem} (or {stem}.gz)")


def _read_jsonl(path: pathlib.Path, required: tuple[str, ...]) -> Iterator[dict]:
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CollectionError(f"{path}:{lineno}: not JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise CollectionError(f"{path}:{lineno}: expected a JSON object")
            for key in required:
                if not isinstance(row.get(key), (str, int)) or isinstance(row.get(key), bool):
                    raise CollectionError(f"{path}:{lineno}: field {key!r} missing or not a string")
            yield row


def read_trec_qrels(path: pathlib.Path) -> dict[str, dict[str, int]]:
    """`query_id iteration doc_id grade` per line; the iteration column is ignored."""
    qrels: dict[str, dict[str, int]] = {}
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise CollectionError(f"{path}:{lineno}: expected 'query_id 0 doc_id grade', got {line.strip()!r}")
            try:
                grade = int(parts[3])
            except ValueError:
                raise CollectionError(f"{path}:{lineno}: grade {parts[3]!r} is not an integer") from None
            qrels.setdefault(parts[0], {})[parts[2]] = max(grade, 0)
    return qrels


def read_simple(folder: str | os.PathLike) -> Collection:
    """Reads the simple format (see the module docstring) from `folder`."""
    folder = pathlib.Path(folder)
    documents: dict[str, Document] = {}
    corpus = _find(folder, "corpus.jsonl")
    for row in _read_jsonl(corpus, ("id", "text")):
        doc_id = str(row["id"])
        if doc_id in documents:
            raise CollectionError(f"{corpus}: duplicate document id {doc_id!r}")
        documents[doc_id] = Document(doc_id, str(row.get("title") or ""), str(row["text"]))
    queries = {str(r["id"]): str(r["text"]) for r in _read_jsonl(_find(folder, "queries.jsonl"), ("id", "text"))}
    qrels = read_trec_qrels(_find(folder, "qrels.txt"))
    _check_references(folder.name, documents, queries, qrels)
    return Collection(folder.name, documents, queries, qrels)


def write_simple(collection: Collection, folder: str | os.PathLike, *, compress: bool = False) -> pathlib.Path:
    """Writes `collection` in the simple format (gzip-compressing the JSONL files if asked)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""

    def dump(name: str, rows: list[dict]) -> None:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        path = folder / (name + suffix)
        if compress:
            # mtime=0: the same collection always gives the same bytes.
            with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                gz.write(data.encode("utf-8"))
        else:
            path.write_text(data, encoding="utf-8")

    dump("corpus.jsonl", [{"id": d.id, "title": d.title, "text": d.text} for d in collection.documents.values()])
    dump("queries.jsonl", [{"id": q, "text": t} for q, t in collection.queries.items()])
    lines = [f"{q} 0 {d} {g}\n" for q, judged in collection.qrels.items() for d, g in judged.items()]
    (folder / "qrels.txt").write_text("".join(lines), encoding="utf-8")
    return folder


def _check_references(name: str, documents: Mapping, queries: Mapping, qrels: Qrels) -> None:
    unknown_q = sorted(set(qrels) - set(queries))
    if unknown_q:
        raise CollectionError(f"{name}: qrels name queries not in the query file: {unknown_q[:5]}")
    unknown_d = sorted({d for judged in qrels.values() for d in judged} - set(documents))
    if unknown_d:
        raise CollectionError(f"{name}: qrels name documents not in the corpus: {unknown_d[:5]}")


# ---------------------------------------------------------------- Cranfield

CRANFIELD_GAIN_NOTE = "Cranfield grades 1 (complete answer) .. 4 (minimum interest) -> gain = 5 - grade; -1 -> 0 (judged not relevant)"

_FIELD = re.compile(r"^\.([A-Z])(?:\s+(\S+))?\s*$")


def _records(path: pathlib.Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Yields (id, {field letter: text}) for each `.I id` record of a SMART-format file."""
    current_id: str | None = None
    fields: dict[str, list[str]] = {}
    field: str | None = None
    # newline=None folds the CRLF line endings into "\n".
    with open(path, encoding="latin-1", newline=None) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip()
            marker = _FIELD.match(line)
            if marker and marker.group(1) == "I":
                if current_id is not None:
                    yield current_id, {k: " ".join(" ".join(v).split()) for k, v in fields.items()}
                if not marker.group(2):
                    raise CollectionError(f"{path}:{lineno}: '.I' without an id")
                current_id, fields, field = marker.group(2), {}, None
            elif marker and not marker.group(2):
                field = marker.group(1)
                fields.setdefault(field, [])
            elif current_id is None or field is None:
                if line.strip():
                    raise CollectionError(f"{path}:{lineno}: text outside a '.I' record field")
            else:
                fields[field].append(line.strip())
    if current_id is not None:
        yield current_id, {k: " ".join(" ".join(v).split()) for k, v in fields.items()}


def read_cranfield(folder: str | os.PathLike) -> Collection:
    """Reads the Cranfield 1400 collection from `folder`.

    * Document ids are the `.I` numbers of `cran.all.1400` ("1" .. "1400"); title = `.T`, text = `.W`
      (the abstract, which usually starts with the title again).
    * Query ids are "1" .. "225": the position of the query in `cran.qry`, because `cranqrel` numbers
      queries that way while the `.I` numbers in `cran.qry` skip (001, 002, 004, 008, ...).
    * Grades 1..4 (lower is more relevant) become gain = 5 - grade; -1 means judged not relevant (gain 0).
    """
    folder = pathlib.Path(folder)
    paths = {name: folder / name for name in ("cran.all.1400", "cran.qry", "cranqrel")}
    for path in paths.values():
        if not path.is_file():
            raise CollectionError(f"{folder}: missing Cranfield file {path.name}")
    documents = {
        doc_id.lstrip("0") or "0": Document(doc_id.lstrip("0") or "0", f.get("T", ""), f.get("W", ""))
        for doc_id, f in _records(paths["cran.all.1400"])
    }
    queries = {str(n): f.get("W", "") for n, (_, f) in enumerate(_records(paths["cran.qry"]), 1)}
    qrels: dict[str, dict[str, int]] = {}
    with open(paths["cranqrel"], encoding="latin-1", newline=None) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                query, doc, grade = parts[0], parts[1], int(parts[2])
            except (IndexError, ValueError):
                raise CollectionError(f"{paths['cranqrel']}:{lineno}: expected 'query doc grade', got {line.strip()!r}") from None
            if grade == -1:
                gain = 0
            elif 1 <= grade <= 4:
                gain = 5 - grade
            else:
                raise CollectionError(f"{paths['cranqrel']}:{lineno}: grade {grade} is not -1 or 1..4")
            qrels.setdefault(query, {})[doc] = gain
    _check_references("cranfield", documents, queries, qrels)
    return Collection("cranfield", documents, queries, qrels, gain_note=CRANFIELD_GAIN_NOTE)


# ---------------------------------------------------------------- discovery

DATA_DIR_ENV = "RESCORE_DATA_DIR"


def shared_data_dir() -> pathlib.Path:
    """The shared test-data folder: `$RESCORE_DATA_DIR`, else `../shared/data` beside the repository."""
    if os.environ.get(DATA_DIR_ENV):
        return pathlib.Path(os.environ[DATA_DIR_ENV])
    return pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"


def load_collection(path: str | os.PathLike) -> Collection:
    """Reads a collection folder in whichever format it holds (Cranfield or simple)."""
    folder = pathlib.Path(path)
    if not folder.is_dir():
        raise CollectionError(f"{folder}: not a folder (expected a collection folder; see `rescore-sidecar eval --help`)")
    if (folder / "cran.all.1400").is_file():
        return read_cranfield(folder)
    if (folder / "corpus.jsonl").is_file() or (folder / "corpus.jsonl.gz").is_file():
        return read_simple(folder)
    raise CollectionError(f"{folder}: no corpus.jsonl(.gz) or cran.all.1400 found")
