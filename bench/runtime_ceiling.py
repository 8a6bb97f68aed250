"""What the OpenVINO runtime alone does on the throughput bench's model: the ceiling for the sidecar.

The same seeded cross-encoder of the ms-marco-MiniLM-L6-v2 shape as bench/sidecar_throughput.py,
exported and (for int8) calibrated by the sidecar's own loader, then called in this process with
no tokenizer, queue or server: batches of random token ids of the bench's pair lengths, every
shape warmed first, configurations taking turns per round. Compare its pairs/s with the sidecar's
rows in the throughput table to see what the serving path costs on top of the runtime.

    .venv/bin/python bench/runtime_ceiling.py [--rounds 5] [--batch 64]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from rescore_sidecar.sidecar.backends import load_backend
from rescore_sidecar.sidecar.core.calibration import calibration_inputs
from rescore_sidecar.sidecar.config import ModelSpec
from rescore_sidecar.tools.seeded_models import build_model

# ~213 tokens per (query, abstract) pair in the throughput bench; a spread of lengths around it.
LENGTHS = (205, 209, 213, 217, 221)
HINTS = {"fp32": {"INFERENCE_PRECISION_HINT": "f32"}, "bf16": {"INFERENCE_PRECISION_HINT": "bf16"}, "int8": {}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=list(HINTS))
    parser.add_argument("--batch", type=int, default=64, help="pairs per forward pass")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import openvino as ov

    core, rng = ov.Core(), np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(pathlib.Path(tmp) / "model", arch="minilm-l6-h384")
        requests = {}
        for precision in args.precisions:
            xml = load_backend(ModelSpec(source=str(model), backend="openvino", precision=precision),
                               device="cpu", cache_dir=str(pathlib.Path(tmp) / "artefacts"),
                               calibrate=calibration_inputs).artefact
            compiled = core.compile_model(xml, "CPU", {"PERFORMANCE_HINT": "LATENCY", **HINTS[precision]})
            names = {port.get_any_name() for port in compiled.inputs}
            batches = []
            for length in LENGTHS:
                shape = (args.batch, length)
                batch = {"input_ids": rng.integers(1000, 20000, shape).astype(np.int64),
                         "attention_mask": np.ones(shape, np.int64), "token_type_ids": np.zeros(shape, np.int64)}
                batches.append({k: v for k, v in batch.items() if k in names})
            request = compiled.create_infer_request()
            for batch in batches:  # warm every shape
                request.infer(batch)
            requests[precision] = (request, batches)
        rates: dict[str, list[float]] = {p: [] for p in requests}
        for _ in range(args.rounds):
            for precision, (request, batches) in requests.items():
                started = time.perf_counter()
                for batch in batches:
                    request.infer(batch)
                rates[precision].append(args.batch * len(batches) / (time.perf_counter() - started))

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or "?")
    print(f"\nmachine: {platform.node()} | {cpu} | {os.cpu_count()} cores | Python {platform.python_version()} "
          f"| OpenVINO {ov.__version__}")
    print(f"batches of {args.batch} pairs x lengths {LENGTHS}, {args.rounds} rounds\n")
    print("| precision | pairs/s (median) | min | max |\n|---|---|---|---|")
    for precision, values in rates.items():
        print(f"| {precision} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
