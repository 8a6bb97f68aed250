"""Writes the OpenAPI documents under docs/openapi/ from the code that serves them
(sidecar/transport/openapi.py, connectors/proxy/openapi.py), so the checked-in files cannot drift.

    python scripts/gen_openapi.py           # regenerate
    python scripts/gen_openapi.py --check   # exit 1 and name the stale files (a unit test runs this)
"""
from __future__ import annotations

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "docs" / "openapi"


def documents() -> dict[str, str]:
    """File name under docs/openapi/ -> its text."""
    from rescore_sidecar.connectors.proxy.openapi import proxy_document
    from rescore_sidecar.sidecar.transport.openapi import sidecar_document

    return {name: json.dumps(doc, indent=2, sort_keys=True) + "\n"
            for name, doc in (("sidecar.json", sidecar_document()), ("proxy.json", proxy_document()))}


def stale() -> list[str]:
    return [name for name, text in documents().items()
            if not (OUT_DIR / name).exists() or (OUT_DIR / name).read_text() != text]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        names = stale()
        for name in names:
            print(f"docs/openapi/{name} is stale: run `python scripts/gen_openapi.py` and commit", file=sys.stderr)
        return 1 if names else 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in documents().items():
        (OUT_DIR / name).write_text(text)
        print(f"wrote docs/openapi/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
