"""The text the model sees for a hit."""
from __future__ import annotations

from rescore_sidecar.connectors._core.text import hit_text
from rescore_sidecar.connectors.config import RerankOptions


def test_text_joins_fields_lists_and_caps():
    opts = RerankOptions(fields=("a", "b.c"), separator=" | ", max_chars=12)
    assert hit_text({"_source": {"a": ["x", "y"], "b": {"c": "zzzzzzzzzz"}}}, opts) == "x y | zzzzzz"
    assert hit_text({"_source": {"b.c": "dotted"}}, RerankOptions(fields=("b.c",))) == "dotted"
    assert hit_text({"_source": {}}, opts) is None
