"""`ab runs` refuses bad arguments before starting anything (its engine run is exercised by hand: docs/ab-testing.md)."""
from __future__ import annotations

from rescore_sidecar.tools.ab.runs import main


def test_bad_collection_or_depth_is_one_line_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["sample", "--depth", "0"]) == 2
    assert "--depth" in capsys.readouterr().err
