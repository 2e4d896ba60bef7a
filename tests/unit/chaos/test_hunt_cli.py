"""``drill chaos hunt`` without hypothesis (the ``hunt`` extra): one line saying what to install, exit 2,
and the rig is not touched."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

import chaos.cli
from chaos.hunt import MISSING_HYPOTHESIS, missing_requirement


def test_missing_hypothesis_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import hypothesis` raise ImportError, as on a machine without it.
    monkeypatch.setitem(sys.modules, "hypothesis", None)

    def no_rig(*args: object) -> None:
        raise AssertionError("the hunt opened the rig before checking its requirements")

    monkeypatch.setattr(chaos.cli, "_injector", no_rig)
    result = CliRunner().invoke(chaos.cli.app, ["hunt", "--examples", "1"])
    assert result.exit_code == 2, result.output
    assert "pip install -e '.[hunt]'" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_hypothesis_installed_means_nothing_missing() -> None:
    assert missing_requirement() is None
    assert "hypothesis" in MISSING_HYPOTHESIS
