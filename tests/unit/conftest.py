"""Fixtures of the unit tests: `spans` (connectors.tracing to an in-memory exporter)."""
from tests.support.spans import spans  # noqa: F401 - a fixture
