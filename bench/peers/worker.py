"""One in-process peer (sentence-transformers CrossEncoder on OpenVINO / ONNX Runtime), driven over pipes.

Run by a peer venv's python (bench/peers/venv.py), never by .venv's: it imports only what that venv
has, not rescore_sidecar. Protocol: one JSON object per line on stdin, one reply per line on stdout.

    {"op": "load", "peer": "openvino" | "onnx-int8" | "openvino-int8", "model": DIR,
     "batch_size": 32, "calibration": [[query, document], ...]}
        -> {"ok": true, "precision": "bf16", "versions": {...}, "load_s": 12.3}
    {"op": "run", "requests": [[query, [document, ...]], ...]}
        -> {"ok": true, "latencies": [seconds per request], "wall": seconds}
    any failure -> {"ok": false, "error": "..."}; end of stdin ends the worker.

`run` does what the baseline row does in the main process: predict(batch_size=32), one request at
a time; the timings are taken here, so the pipe's cost is not counted.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

# Replies get their own copy of stdout; fd 1 then points at stderr, so whatever the libraries print
# (export warnings, NNCF's progress bars) cannot corrupt the protocol.
_REPLIES = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr

PACKAGES = ["sentence-transformers", "transformers", "torch", "optimum", "optimum-intel", "optimum-onnx",
            "openvino", "nncf", "onnxruntime"]
# OpenVINO element types as the table's dtype column names them.
PRECISIONS = {"bf16": "bf16", "f32": "fp32", "f16": "fp16"}


def _ov_precision(encoder: Any) -> str:
    """The CPU plugin's inference precision: ST leaves OpenVINO's default (bf16 on AVX512-BF16/AMX)."""
    hint = encoder.transformers_model.request.get_property("INFERENCE_PRECISION_HINT")
    return PRECISIONS.get(hint.get_type_name(), hint.get_type_name())


def load(peer: str, model: str, calibration: list[list[str]]) -> tuple[Any, str]:
    """(CrossEncoder, precision label) for one peer; model is this worker's own copy of the checkpoint."""
    from sentence_transformers import CrossEncoder

    if peer == "openvino":
        encoder = CrossEncoder(model, backend="openvino")
        return encoder, _ov_precision(encoder)
    if peer == "onnx-int8":
        from sentence_transformers import export_dynamic_quantized_onnx_model

        export_dynamic_quantized_onnx_model(CrossEncoder(model, backend="onnx"), "avx512_vnni", model)
        encoder = CrossEncoder(model, backend="onnx",
                               model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"})
        return encoder, "int8"
    if peer == "openvino-int8":
        _export_static_int8(CrossEncoder(model, backend="openvino"), model, calibration)
        encoder = CrossEncoder(model, backend="openvino",
                               model_kwargs={"file_name": "openvino/openvino_model_qint8_quantized.xml"})
        return encoder, "int8"
    raise ValueError(f"unknown peer {peer!r}")


def _export_static_int8(encoder: Any, model: str, calibration: list[list[str]]) -> None:
    """sentence-transformers' export_static_quantized_openvino_model, calibrated on local pairs.

    That function loads its calibration set from a hub dataset (glue/sst2), which is unreachable
    here; this is its body with the dataset swapped for the bench's own (query, document) pairs,
    tokenized as it tokenizes (padded to 384), and the file saved where it saves it.
    """
    import nncf
    from optimum.intel.openvino import OVConfig, OVQuantizationConfig, OVQuantizer
    from sentence_transformers.backend.utils import save_or_push_to_hub_model

    samples = [dict(encoder.tokenizer(q, d, padding="max_length", max_length=384, truncation=True,
                                      return_tensors="np")) for q, d in calibration]
    config = OVQuantizationConfig(num_samples=len(samples))
    quantizer = OVQuantizer.from_pretrained(encoder.transformers_model)
    save_or_push_to_hub_model(
        export_function=lambda save_dir: quantizer.quantize({"model": nncf.Dataset(samples)}, save_directory=save_dir,
                                                            ov_config=OVConfig(quantization_config=config)),
        export_function_name="export_static_quantized_openvino_model", config=config,
        model_name_or_path=model, file_suffix="qint8_quantized", backend="openvino", model=encoder)


def versions() -> dict[str, str]:
    import importlib.metadata as metadata

    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def run(encoder: Any, batch_size: int, requests: list[list[Any]]) -> tuple[list[float], float]:
    latencies = []
    started = time.perf_counter()
    for query, docs in requests:
        t0 = time.perf_counter()
        encoder.predict([(query, d) for d in docs], batch_size=batch_size, show_progress_bar=False)
        latencies.append(time.perf_counter() - t0)
    return latencies, time.perf_counter() - started


def main() -> int:
    encoder, batch_size = None, 32
    for line in sys.stdin:
        try:
            message = json.loads(line)
            if message["op"] == "load":
                t0 = time.perf_counter()
                batch_size = int(message.get("batch_size", 32))
                encoder, precision = load(message["peer"], message["model"], message.get("calibration", []))
                reply = {"ok": True, "precision": precision, "versions": versions(),
                         "load_s": time.perf_counter() - t0}
            elif message["op"] == "run":
                if encoder is None:
                    raise RuntimeError("run before load")
                latencies, wall = run(encoder, batch_size, message["requests"])
                reply = {"ok": True, "latencies": latencies, "wall": wall}
            else:
                raise ValueError(f"unknown op {message['op']!r}")
        except Exception as exc:  # reported to the driver, which skips this peer
            traceback.print_exc()
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        _REPLIES.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
