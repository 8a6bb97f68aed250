"""`rescore-sidecar serve`'s flags: generated from SidecarConfig, bad values rejected before any
model loads (exit 2, the setting named), precedence file < environment < flags."""
from __future__ import annotations

import pytest

from rescore_sidecar.sidecar.config import SidecarConfig
from rescore_sidecar.sidecar.app import serve_main


def test_every_setting_has_a_flag(capsys):
    with pytest.raises(SystemExit):
        serve_main(["--help"])
    text = capsys.readouterr().out
    for name, field in SidecarConfig.model_fields.items():
        # The two repeatable settings take one item per flag, named in the singular.
        flag = {"models": "--model", "model_aliases": "--model-alias"}.get(name, "--" + name.replace("_", "-"))
        assert flag in text, name
        if field.annotation is bool:
            assert "--no-" + name.replace("_", "-") in text  # booleans are switches


@pytest.mark.parametrize("argv, named", [
    (["--port", "not-a-port"], "port"),
    (["--max-batch-tokens", "0"], "max_batch_tokens"),
    (["--dtype", "int3"], "dtype"),
    (["--tls-cert-file", "/c.pem"], "tls_key_file"),
])
def test_bad_flags_exit_2_naming_the_setting(argv, named, capsys, monkeypatch):
    monkeypatch.delenv("RESCORE_CONFIG", raising=False)
    assert serve_main(argv) == 2
    err = capsys.readouterr().err
    assert "invalid configuration" in err and named in err


def test_flag_beats_environment_beats_file(tmp_path, capsys, monkeypatch):
    # An invalid value at one level and a valid one above it: serve only gets past the
    # configuration when the upper level wins (then it fails later, on a model that is not there).
    path = tmp_path / "sidecar.yaml"
    path.write_text("max_wait_ms: -1\n")
    monkeypatch.setenv("RESCORE_CONFIG", str(path))
    assert serve_main(["--model", str(tmp_path / "missing-model")]) == 2  # the file's bad value counts
    monkeypatch.setenv("RESCORE_MAX_WAIT_MS", "3")
    monkeypatch.setenv("RESCORE_PORT", "-5")
    assert serve_main(["--model", str(tmp_path / "missing-model")]) == 2  # the env's bad port counts
    capsys.readouterr()
    assert serve_main(["--model", str(tmp_path / "missing-model"), "--port", "0", "--host", "127.0.0.1",
                       "--metrics-port", "0"]) == 1  # configuration accepted; the model cannot load
    assert "invalid configuration" not in capsys.readouterr().err


def test_model_aliases_from_repeated_flags_the_environment_and_a_mapping(monkeypatch):
    from rescore_sidecar.sidecar.app import _build_parser
    from rescore_sidecar.sidecar.config import load_config

    args = vars(_build_parser().parse_args(["--model-alias", "rerank-v3.5=ce", "--model-alias", "a = bi"]))
    assert load_config(args).model_aliases == {"rerank-v3.5": "ce", "a": "bi"}
    monkeypatch.setenv("RESCORE_MODEL_ALIASES", "x=ce,y=bi")
    assert load_config({}).model_aliases == {"x": "ce", "y": "bi"}
    assert SidecarConfig(model_aliases={"z": "ce"}).model_aliases == {"z": "ce"}
    with pytest.raises(ValueError, match="NAME=SERVED"):
        SidecarConfig(model_aliases=["no-equals-sign"])
