"""eval/demo command lines: bad input is a clear error (exit 2) before anything is started."""
from __future__ import annotations

import pytest

from rescore_sidecar.tools import demo
from rescore_sidecar.tools.eval import cli
from rescore_sidecar.tools.eval.runner import parse_config


def test_parse_config_keys_aliases_and_labels() -> None:
    c = parse_config("policy=blend,weight=0.25,window=20,model=ce", default_window=50)
    assert c.options == {"window": 20, "policy": "linear", "model_weight": 0.25, "model": "ce"}
    assert c.label == "ce · window 20 · linear 0.25"
    assert parse_config("policy=rrf,rrf_k=10", default_model="minilm").label == "minilm · window 50 · rrf k=10"
    assert parse_config("label=mine").label == "mine"
    assert parse_config("").options == {"window": 50}


@pytest.mark.parametrize("spec,message", [
    ("policy=best", "policy must be replace, linear"),
    ("window=0", "window must be an integer in 1..10000"),
    ("window=ten", "window: invalid literal"),
    ("weight=2,policy=linear", "model_weight must be in"),
    ("colour=red", "unknown key 'colour'"),
    ("policy", "expected key=value"),
])
def test_parse_config_rejects_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_config(spec)


@pytest.mark.parametrize("argv,message", [
    (["sample", "--config", "policy=best"], "policy must be"),
    (["sample", "--depth", "10", "--config", "window=20"], "window 20 is larger than --depth 10"),
    (["sample", "--depth", "0"], "--depth must be at least 1"),
    (["sample", "--sidecar", "127.0.0.1:1", "--model", "x"], "--model picks models"),
    (["/no/such/folder"], "not a folder"),
    (["sample", "--selective-sweep", "0.1,2"], "must be in [0, 1]"),
    (["sample", "--selective-sweep", "a,b"], "must be numbers"),
])
def test_eval_cli_bad_input_exits_2(argv, message, capsys) -> None:
    assert cli.main(argv + ["--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_eval_cli_unreachable_engine_is_one_line(capsys) -> None:
    rc = cli.main(["sample", "--engine-url", "http://127.0.0.1:9", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "no OpenSearch/Elasticsearch answering at http://127.0.0.1:9" in err
    assert "Traceback" not in err


def test_demo_bad_flags_exit_2(capsys) -> None:
    assert demo.main(["--rerank", "policy=nope"]) == 2
    assert "policy must be" in capsys.readouterr().err
    assert demo.main(["--sidecar", "127.0.0.1:1", "--model", "x"]) == 2


def test_side_by_side_marks_relevant_hits() -> None:
    from rescore_sidecar.tools.eval.sample import load_sample

    sample = load_sample()
    q = next(iter(sample.queries))
    relevant = [d for d, g in sample.qrels[q].items() if g > 0]
    other = [d for d in sample.documents if d not in sample.qrels[q]]
    text = demo.side_by_side(sample, q, other[:5], relevant[:5], width=100)
    lines = text.splitlines()
    body = lines[-5:]
    assert all(line.index("│") == body[0].index("│") for line in body)  # columns line up
    assert all(len(line) <= 100 for line in lines)
    left, right = zip(*(line.split("│") for line in body))
    assert not any("●" in cell or "*" in cell for cell in left)
    assert all(("●" in cell or "*" in cell) for cell in right[: len(relevant[:5])])
