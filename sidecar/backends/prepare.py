"""`rescore-sidecar prepare-model SPEC...`: build and cache each model's runtime artefacts
(exported OpenVINO IR, calibrated int8) ahead of time, e.g. in a Docker image build step, so
that `serve` only loads them. SPEC is a `--model` string: `[NAME=]SOURCE[,KEY=VALUE...]`."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="rescore-sidecar prepare-model", description=__doc__)
    parser.add_argument("specs", nargs="*", metavar="SPEC",
                        help="model strings as for serve --model; none = the bundled all-MiniLM-L6-v2")
    parser.add_argument("--device", default="cpu", help="device the artefacts are for (default: cpu)")
    parser.add_argument("--dtype", default="auto", help="global dtype, as for serve (default: auto)")
    parser.add_argument("--model-cache-dir", default="", help="as for serve (default: next to the model, "
                                                               "else ~/.cache/rescore-sidecar/models)")
    args = parser.parse_args(list(argv))
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    from rescore_sidecar.sidecar.backends import load_backend
    from rescore_sidecar.sidecar.config import ModelSpec, SidecarConfig
    from rescore_sidecar.sidecar.core.calibration import calibration_inputs

    try:
        specs = [ModelSpec.parse(spec) for spec in args.specs] or SidecarConfig().model_specs()
        for spec in specs:
            backend = load_backend(spec, device=args.device, dtype=args.dtype, cache_dir=args.model_cache_dir,
                                   calibrate=calibration_inputs)
            print(f"{backend.name}: {backend.runtime} {backend.precision} {backend.artefact or '(no artefact)'}")
    except ValueError as exc:
        print(f"rescore-sidecar prepare-model: {exc}", file=sys.stderr)
        return 1
    return 0
