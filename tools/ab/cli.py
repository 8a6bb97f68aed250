"""`rescore-sidecar ab COMMAND`: report (read the impression/feedback log), simulate (sensitivity of
interleaving vs split tests on a judged collection), runs (write the simulator's run files)."""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

COMMANDS = {
    "report": ("rescore_sidecar.tools.ab.report", "per experiment: wins, Δ_AB with a 95% CI, split CTR/MRR"),
    "simulate": ("rescore_sidecar.tools.ab.simulate", "impressions interleaving vs a split test need (click model)"),
    "runs": ("rescore_sidecar.tools.ab.runs", "engine order and reranked runs of a collection, for simulate"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        if args and args[0] not in ("-h", "--help"):
            print(f"rescore-sidecar ab: unknown command {args[0]!r}", file=sys.stderr)
        print("usage: rescore-sidecar ab {report,simulate,runs} [ARGS...]\n\ncommands:\n"
              + "\n".join(f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()),
              file=sys.stdout if args[:1] in (["-h"], ["--help"]) else sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    return int(importlib.import_module(COMMANDS[args[0]][0]).main(args[1:]) or 0)
