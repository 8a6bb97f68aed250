"""`rescore-sidecar` command line: one entry point, one subcommand per job.

Each subcommand lives in its own module and is imported only when chosen, so
`rescore-sidecar proxy` never loads torch and `--help` stays fast.
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Sequence

# subcommand -> ("module:function", one-line help, the extra that installs what it needs).
# Each function takes argv and returns an exit code.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": ("rescore_sidecar.sidecar.app:serve_main", "run the gRPC reranking server", "server"),
    "prepare-model": ("rescore_sidecar.sidecar.backends.prepare:main",
                      "build and cache a model's exported/quantized artefacts (image build step)", "server"),
    "proxy": ("rescore_sidecar.connectors.proxy.cli:main", "run the HTTP rescoring proxy in front of a cluster",
              "proxy"),
    "eval": ("rescore_sidecar.tools.eval.cli:main", "measure ranking quality: engine order vs. rescored", "eval"),
    "demo": ("rescore_sidecar.tools.demo:main", "end-to-end demo: local engine, sidecar, side-by-side results",
             "all"),
    "finetune": ("rescore_sidecar.tools.finetune.cli:main",
                 "train a cross-encoder on your collection's judgements, evaluated on held-out queries", "finetune"),
    "ab": ("rescore_sidecar.tools.ab.cli:main", "A/B tests: report from the feedback log, simulate, runs", "eval"),
    "engine": ("rescore_sidecar.tools.localnode:main",
               "download, start and stop a local OpenSearch/Elasticsearch node", "opensearch,elasticsearch"),
}


def _usage() -> str:
    lines = ["usage: rescore-sidecar COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_, _) in SUBCOMMANDS.items()]
    lines += ["", "Run `rescore-sidecar COMMAND --help` for a command's options."]
    return "\n".join(lines)


def _resolve(target: str) -> Callable[[Sequence[str]], int]:
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"rescore-sidecar: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target, _, extra = SUBCOMMANDS[name]
    try:
        # Commands import their heavy libraries lazily, so a missing one can surface on either line.
        return int(_resolve(target)(rest) or 0)
    except ModuleNotFoundError as exc:
        # A client-only install lacks the model stack or the proxy's server: name the extra.
        print(f"rescore-sidecar {name}: needs the '{extra}' extra (missing module {exc.name!r}):"
              f" pip install 'rescore-sidecar[{extra}]'", file=sys.stderr)
        return 2
