"""The load commands' argument checks (no Locust run: that is the integration tests' job)."""

from __future__ import annotations

from typer.testing import CliRunner

from loadtests.cli import app


def test_commands_listed() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "intake" in result.output and "amqp" in result.output


def test_unknown_shape_is_refused_before_anything_runs(tmp_path: object) -> None:
    result = CliRunner().invoke(app, ["intake", "--shape", "sawtooth", "--run-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "sawtooth" in result.output or "shape" in result.output
