import pytest
from pydantic import ValidationError

from rescore_sidecar.sidecar.config import DEFAULT_MODEL_NAME, ModelSpec, SidecarConfig, load_config


def test_model_spec_parses_name_and_source():
    assert ModelSpec.parse("rr=BAAI/bge-reranker-v2-m3") == ModelSpec(name="rr", source="BAAI/bge-reranker-v2-m3")
    spec = ModelSpec.parse("cross-encoder/ms-marco-MiniLM-L6-v2")
    assert spec.name == "" and spec.display_name() == "cross-encoder/ms-marco-MiniLM-L6-v2"
    assert ModelSpec.parse({"source": "/m", "kind": "bi-encoder"}).kind == "bi-encoder"
    with pytest.raises(ValueError):
        ModelSpec.parse("  ")


def test_local_path_is_named_after_its_directory(tmp_path):
    (tmp_path / "my-model").mkdir()
    assert ModelSpec.parse(str(tmp_path / "my-model")).display_name() == "my-model"


def test_precedence_defaults_file_env_cli(tmp_path, monkeypatch):
    config_file = tmp_path / "sidecar.yaml"
    config_file.write_text("port: 6000\nmetrics_port: 6001\nmax_wait_ms: 7\nmodels:\n  - a=/x\n  - {source: /y, name: b}\n")
    monkeypatch.setenv("RESCORE_METRICS_PORT", "7001")
    monkeypatch.setenv("RESCORE_MAX_WAIT_MS", "8")
    config = load_config({"max_wait_ms": "9"}, config_file)
    assert config.port == 6000            # file over default
    assert config.metrics_port == 7001    # env over file
    assert config.max_wait_ms == 9.0      # CLI over env
    assert [m.display_name() for m in config.models] == ["a", "b"]


def test_models_from_environment_are_comma_separated(monkeypatch):
    monkeypatch.setenv("RESCORE_MODELS", "a=/x, b=org/model")
    assert [(m.name, m.source) for m in load_config().models] == [("a", "/x"), ("b", "org/model")]


def test_no_model_serves_the_bundled_minilm():
    (spec,) = SidecarConfig().model_specs()
    assert spec.name == DEFAULT_MODEL_NAME and spec.kind == "bi-encoder"


@pytest.mark.parametrize("values", [{"port": "not-a-port"}, {"max_batch_tokens": 0}, {"no_such_setting": 1},
                                    {"dtype": "int3"}])
def test_bad_values_are_rejected_with_the_field_named(values):
    with pytest.raises(ValidationError) as info:
        load_config(values)
    assert next(iter(values)) in str(info.value)


def test_unreadable_config_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config({}, bad)
    with pytest.raises(ValueError, match="cannot read config file"):
        load_config({}, tmp_path / "missing.yaml")


def test_every_setting_is_documented():
    import pathlib

    doc = (pathlib.Path(__file__).resolve().parents[3] / "docs" / "sidecar.md").read_text()
    missing = [name for name in SidecarConfig.model_fields
               if f"| `{name}`" not in doc or f"`RESCORE_{name.upper()}`" not in doc]
    assert not missing, f"settings missing from docs/sidecar.md: {missing}"


def test_model_options_after_the_source():
    spec = ModelSpec.parse("rr=BAAI/bge-reranker-v2-m3,backend=openvino,precision=int8")
    assert (spec.name, spec.source, spec.backend, spec.precision) == ("rr", "BAAI/bge-reranker-v2-m3", "openvino", "int8")
    assert ModelSpec.parse("/m,calibration_file=/c.tsv,kind=bi-encoder").calibration_file == "/c.tsv"
    with pytest.raises(ValueError, match="backend, precision"):
        ModelSpec.parse("/m,speed=fast")
    with pytest.raises(ValueError):
        ModelSpec.parse("/m,precision=int4")


def test_environment_models_keep_their_options(monkeypatch):
    monkeypatch.setenv("RESCORE_MODELS", "a=/x,backend=torch,precision=bf16, b=org/model,precision=int8")
    a, b = load_config().models
    assert (a.name, a.backend, a.precision) == ("a", "torch", "bf16")
    assert (b.name, b.source, b.backend, b.precision) == ("b", "org/model", "auto", "int8")
