"""Data only: the sample collection the demo and CI use (`cranfield-sample/`, read by `tools/eval/sample.py`).

A package so that setuptools ships it by its `packages` list (pyproject.toml), not as stray data.
"""
