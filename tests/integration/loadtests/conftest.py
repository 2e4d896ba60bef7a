"""Fixtures of the load-test tests: a retailers file and a fake intake server on loopback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.world import default_scenario
from simulator.world import build_retailers, write_retailers_file

sys.path.insert(0, str(Path(__file__).parent))  # fake_intake sits beside this file (importlib mode)

from fake_intake import FakeIntake, FakeIntakeServer

SEED = 7


@pytest.fixture
def retailers_file(tmp_path: Path) -> Path:
    """A ``retailers.json`` for seed 7, written as ``drill simulate`` writes it."""
    path = tmp_path / "retailers.json"
    write_retailers_file(path, SEED, build_retailers(SEED, default_scenario()))
    return path


@pytest.fixture
def intake(retailers_file: Path) -> Iterator[FakeIntake]:
    """A running fake intake (``.url``); stopped after the test."""
    server = FakeIntakeServer(FakeIntake(retailers_file)).start()
    try:
        yield server.fake
    finally:
        server.stop()
