"""Backend/precision resolution, the artefact cache, and failures at load time (never at request time)."""
import functools
import os

import pytest

from rescore_sidecar.sidecar.backends import load_backend as load_backend_uncalibrated
from rescore_sidecar.sidecar.backends.loader import read_calibration, resolve_runtime
from rescore_sidecar.sidecar.backends.registry import resolve_precision
from rescore_sidecar.sidecar.backends.openvino import artefact_dir
from rescore_sidecar.sidecar.config import ModelSpec
from rescore_sidecar.sidecar.core.calibration import calibration_inputs
from rescore_sidecar.tools.seeded_models import build_model

load_backend = functools.partial(load_backend_uncalibrated, calibrate=calibration_inputs)  # as serve loads


def test_auto_is_openvino_fp32_on_cpu_and_the_global_dtype_sets_the_precision():
    spec = ModelSpec(source="/m")
    assert resolve_runtime(spec, "cpu") == "openvino"
    assert resolve_runtime(spec, "cuda:0") == "torch"
    assert resolve_runtime(ModelSpec(source="/m", backend="torch"), "cpu") == "torch"
    assert resolve_precision(spec, "cpu", "auto") == "fp32"
    assert resolve_precision(spec, "cpu", "bfloat16") == "bf16"
    assert resolve_precision(ModelSpec(source="/m", precision="int8"), "cpu", "float32") == "int8"


@pytest.mark.parametrize("backend,precision,words", [
    ("torch", "int8", "int8"),
    ("openvino", "fp16", "fp16"),
])
def test_unsupported_combination_fails_at_load_naming_model_and_backend(tiny_cross_encoder, backend, precision,
                                                                       words, tmp_path):
    spec = ModelSpec(source=str(tiny_cross_encoder), name="ce", backend=backend, precision=precision)
    with pytest.raises(ValueError) as info:
        load_backend(spec, device="cpu", cache_dir=str(tmp_path))
    message = str(info.value)
    assert "'ce'" in message and f"backend={backend}" in message and words in message


def test_an_architecture_openvino_cannot_export_fails_at_load(tmp_path):
    # A checkpoint whose weights do not load is the failure a runtime meets first; the error must say which.
    model = build_model(tmp_path / "broken", kind="cross-encoder", arch="tiny", seed=0)
    for weights in model.glob("*.safetensors"):
        weights.write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match=r"'broken'.*backend=openvino"):
        load_backend(ModelSpec(source=str(model), backend="openvino"), device="cpu", cache_dir=str(tmp_path / "c"))


def test_openvino_on_cuda_is_refused(tiny_cross_encoder, tmp_path):
    with pytest.raises(ValueError, match="backend=openvino.*CPU"):
        load_backend(ModelSpec(source=str(tiny_cross_encoder), backend="openvino"), device="cuda",
                     cache_dir=str(tmp_path))


def test_artefacts_are_built_once_and_a_changed_checkpoint_gets_a_new_one(tmp_path):
    model = build_model(tmp_path / "ce", kind="cross-encoder", arch="tiny", seed=0)
    spec = ModelSpec(source=str(model), backend="openvino", precision="int8")
    first = load_backend(spec, device="cpu")
    (xml,) = (model / "openvino").glob("cross-encoder-int8-default-*/model.xml")  # next to the writable model
    assert first.artefact == str(xml)
    built = xml.stat().st_mtime_ns
    again = load_backend(spec, device="cpu")
    assert again.artefact == str(xml) and xml.stat().st_mtime_ns == built  # reused, not rebuilt
    weights = next(model.glob("*.safetensors"))
    os.utime(weights, ns=(built + 10**9, built + 10**9))
    changed = load_backend(spec, device="cpu").artefact
    assert changed != str(xml) and os.path.isfile(changed)
    assert xml.stat().st_mtime_ns == built  # the published one is never replaced under a running replica


def test_an_artefact_beside_a_read_only_model_is_used_not_rebuilt(tmp_path, monkeypatch):
    """prepare-model at image build time (root, writable) then serve as a non-root user on a
    read-only root filesystem: the artefact beside the model is found, nothing is built."""
    from rescore_sidecar.sidecar.backends import openvino

    model = build_model(tmp_path / "ce", kind="cross-encoder", arch="tiny", seed=0)
    spec = ModelSpec(source=str(model), backend="openvino", precision="int8")
    built = load_backend(spec, device="cpu").artefact
    folder = os.path.dirname(built)
    assert os.path.dirname(folder) == str(model / "openvino")
    assert os.stat(folder).st_mode & 0o777 == 0o755  # not mkdtemp's 0700: others must read it
    monkeypatch.setattr(openvino.os, "access", lambda path, mode: False)  # as uid 10001 sees /opt/rescore/models
    cache = tmp_path / "cache"
    assert load_backend(spec, device="cpu", cache_dir=str(cache)).artefact == built
    assert load_backend(spec, device="cpu").artefact == built
    assert not cache.exists()


def test_read_only_model_dir_uses_the_cache_dir_keyed_by_source(tmp_path):
    spec = ModelSpec(source="org/some-model", revision="abc")
    from types import SimpleNamespace

    backend = SimpleNamespace(kind="bi-encoder", precision="bf16")
    path = artefact_dir(backend, spec, str(tmp_path))
    assert path.parent.parent == tmp_path and path.name.startswith("bi-encoder-fp32-")  # bf16 runs the fp32 IR
    other = artefact_dir(backend, ModelSpec(source="org/some-model", revision="def"), str(tmp_path))
    assert other != path


def test_a_calibration_file_gives_its_own_artefact_and_bad_files_fail(tmp_path):
    calibration = tmp_path / "cal.tsv"
    calibration.write_text("wing flutter\tpanel flutter at supersonic speed\nsecond document without a query\n")
    assert read_calibration(calibration) == [("wing flutter", "panel flutter at supersonic speed"),
                                             ("wing flutter", "second document without a query")]
    assert len(read_calibration()) >= 32  # the shipped Cranfield sample
    from types import SimpleNamespace

    backend = SimpleNamespace(kind="cross-encoder", precision="int8")
    named = artefact_dir(backend, ModelSpec(source="x/y", calibration_file=str(calibration)), str(tmp_path))
    assert named != artefact_dir(backend, ModelSpec(source="x/y"), str(tmp_path))
    with pytest.raises(ValueError, match="calibration"):
        read_calibration(tmp_path / "missing.tsv")


def test_int8_without_calibration_inputs_fails_at_load(tmp_path):
    model = build_model(tmp_path / "ce", kind="cross-encoder", arch="tiny", seed=0)
    with pytest.raises(ValueError, match=r"backend=openvino.*calibration"):
        load_backend_uncalibrated(ModelSpec(source=str(model), backend="openvino", precision="int8"), device="cpu")


def test_an_unknown_backend_fails_at_load_naming_the_runtimes(tiny_cross_encoder):
    with pytest.raises(ValueError, match=r"backend=onnx.*unknown backend 'onnx'.*torch, openvino"):
        load_backend(ModelSpec(source=str(tiny_cross_encoder), name="ce", backend="onnx"), device="cpu")


def test_an_artefact_with_truncated_weights_is_rebuilt_with_a_warning(tmp_path, caplog):
    model = build_model(tmp_path / "ce", kind="cross-encoder", arch="tiny", seed=0)
    spec = ModelSpec(source=str(model), backend="openvino", precision="fp32")
    xml = load_backend(spec, device="cpu").artefact
    weights = os.path.join(os.path.dirname(xml), "model.bin")
    os.truncate(weights, os.path.getsize(weights) // 2)  # a copy cut short, a full disk
    with caplog.at_level("WARNING"):
        rebuilt = load_backend(spec, device="cpu")
    assert rebuilt.artefact == xml and "rebuilding the corrupt artefact" in caplog.text
    assert not [p for p in (model / "openvino").iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    from rescore_sidecar.sidecar.core.tokenization import tokenize_request

    assert rebuilt.forward(tokenize_request(rebuilt, "wing", ["flutter"]).sequences).shape[0] == 1  # it loads
