"""Writes the sync connectors modules from their async sources, so the two cannot drift (httpcore's
unasync, in small): `connectors/_async/X.py` is the one source, `connectors/X.py` is generated.

    python scripts/unasync.py           # regenerate
    python scripts/unasync.py --check   # exit 1 and name the stale files (a unit test runs this)

The rewrite is by whole words: `async def`/`async with`/`async for` lose `async`, `await` goes,
and the async names below become their sync twins; nothing else changes.
"""
from __future__ import annotations

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
# source (async) -> generated (sync), relative to the repository root.
FILES = {
    "connectors/_async/client.py": "connectors/_sidecar/client.py",
    "connectors/_async/rescoring.py": "connectors/rescoring.py",
    "connectors/_async/wrappers.py": "connectors/wrappers.py",
}
# Whole identifiers (and dotted module paths) renamed in the sync copy.
NAMES = {
    "rescore_sidecar.connectors._async.client": "rescore_sidecar.connectors._sidecar.client",
    "rescore_sidecar.connectors._async.rescoring": "rescore_sidecar.connectors.rescoring",
    "AsyncSidecarClient": "SidecarClient",
    "AsyncChannels": "Channels",
    "AsyncRetrying": "Retrying",
    "run_all_async": "run_all",
    "AsyncRescorer": "Rescorer",
    "AsyncRescoringOpenSearch": "RescoringOpenSearch",
    "AsyncRescoringElasticsearch": "RescoringElasticsearch",
    "AsyncOpenSearch": "OpenSearch",
    "AsyncElasticsearch": "Elasticsearch",
    "_AsyncWrapper": "_Wrapper",
    "AsyncEngineSearchCall": "EngineSearchCall",
    "AsyncEngineMsearchCall": "EngineMsearchCall",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
}
_NAME = re.compile(r"(?<![\w.])(" + "|".join(re.escape(n) for n in sorted(NAMES, key=len, reverse=True)) + r")(?![\w])")
HEADER = "# Generated from {source} by scripts/unasync.py: edit that file, then run the script.\n"


def _unasync_line(line: str) -> str:
    line = re.sub(r"\basync (def|with|for)\b", r"\1", line)
    line = re.sub(r"\bawait ", "", line)
    line = re.sub(r"Awaitable\[([^\[\]]*(?:\[[^\[\]]*\])?[^\[\]]*)\]", r"\1", line)  # Awaitable[X] -> X
    line = re.sub(r"\bAwaitable, ", "", line)  # the import, once no annotation uses it
    return _NAME.sub(lambda m: NAMES[m.group(1)], line)


def _open_bracket(line: str) -> int:
    """Index of the innermost bracket the line leaves open, or -1 (strings and comments skipped,
    well enough for our sources)."""
    code = re.sub(r"#.*$", "", re.sub(r"\"[^\"]*\"|'[^']*'", lambda m: "_" * len(m.group()), line))
    stack: list[int] = []
    for i, c in enumerate(code):
        if c in "([{":
            stack.append(i)
        elif c in ")]}" and stack:
            stack.pop()
    return stack[-1] if stack else -1


def unasync(text: str) -> str:
    """The sync twin of an async module's text; lines continuing a bracket that a shortened line
    opened move left with it, so aligned arguments stay aligned."""
    out, shift = [], 0
    for line in text.split("\n"):
        new = _unasync_line(line)
        if shift and new.startswith(" " * shift) and not new.lstrip().startswith(("def ", "class ", "@")):
            new = new[shift:]
        opened = _open_bracket(line)
        if opened >= 0:  # the next line continues this one's bracket
            shift = opened + 1 - len(_unasync_line(line[: opened + 1]))
        elif not line.rstrip().endswith(","):
            shift = 0
        out.append(new)
    return "\n".join(out)


def generated(source: str) -> str:
    return HEADER.format(source=source) + unasync((ROOT / source).read_text())


def stale() -> list[str]:
    """The generated files whose text is not what their source gives now."""
    out = []
    for source, target in FILES.items():
        path = ROOT / target
        if not path.exists() or path.read_text() != generated(source):
            out.append(target)
    return out


def main(argv: list[str]) -> int:
    if "--check" in argv:
        names = stale()
        for name in names:
            print(f"{name} is stale: run python scripts/unasync.py", file=sys.stderr)
        return 1 if names else 0
    for source, target in FILES.items():
        (ROOT / target).write_text(generated(source))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
