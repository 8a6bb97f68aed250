"""Prints the project's runtime requirements (plus chosen extras) from pyproject.toml, one per line.

The images install these before copying the source, so editing code does not rebuild the
multi-GB dependency layer:  python pyproject_deps.py pyproject.toml proxy,opensearch > req.txt
"""
from __future__ import annotations

import sys
import tomllib
from typing import Sequence


def requirements(pyproject: dict, extras: Sequence[str]) -> list[str]:
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise ValueError(f"unknown extras {unknown}; pyproject defines {sorted(optional)}")
    name = project["name"]
    reqs = list(project.get("dependencies", []))
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        for req in optional[extra]:
            # "rescore-sidecar[a,b]" names other extras of this project: expand them, since the
            # project itself is not installable before its code is copied in.
            if req.replace("_", "-").startswith(name + "["):
                todo += req[req.index("[") + 1:req.index("]")].split(",")
            elif req not in reqs:
                reqs.append(req)
    return reqs

def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0], "rb") as f:
        pyproject = tomllib.load(f)
    extras = [e for e in (args[1] if len(args) == 2 else "").split(",") if e]
    try:
        print("\n".join(requirements(pyproject, extras)))
    except ValueError as exc:
        print(f"pyproject_deps: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
