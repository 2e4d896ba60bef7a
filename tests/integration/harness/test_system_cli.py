"""``drill system up`` without a broker rig: it says it does not provision, and still starts the spec."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from harness.system_cli import app


def test_up_without_a_rig_says_so_and_still_starts(tmp_path: Path) -> None:
    spec = tmp_path / "services.toml"
    spec.write_text('[[service]]\nname = "idle"\nargv = ["{python}", "-c", "import time; time.sleep(30)"]\n')
    run_dir = tmp_path / "system"
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["up", "--spec", str(spec), "--run-dir", str(run_dir), "--cluster-run-dir", str(tmp_path / "none")],
    )
    try:
        assert result.exit_code == 0, result.output
        assert "no broker rig recorded" in result.output and "system up in" in result.output
        assert "idle" in result.output
    finally:
        down = runner.invoke(app, ["down", "--run-dir", str(run_dir)])
        assert down.exit_code == 0, down.output
