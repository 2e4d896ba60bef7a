"""Shared pytest configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

_INTEGRATION = Path(__file__).parent / "integration"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--broker",
        default=None,
        help="Which RabbitMQ the integration suite's cluster runs: system (the host's package, the "
        "default), 3.10 or 4.0 (rig/cluster/versions.py; env DRILL_CLUSTER_BROKER works too).",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration runs in the integration env, marked or not."""
    for item in items:
        if _INTEGRATION in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)
