"""The dry run through the CLI, and the runner's pure parts: the SLO file, the drill's own checks, the
partial-run marking."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chaos.probes import ProbeResult
from chaos.runner import ExperimentResult, FaultOutcome
from harness.cli import app
from harness.drill.chaos_thread import ChaosThread
from harness.drill.checks import chaos_check, traffic_check
from harness.drill.phases.prepare import slo_toml
from harness.drill.run import run_dir_name
from harness.drill.scenario import load
from reports.slo import load_slo

ROOT = Path(__file__).resolve().parents[3]


def test_run_dry_run_prints_the_phases_and_the_chaos_timeline() -> None:
    result = CliRunner().invoke(app, ["run", "demo", "--dry-run", "--cluster-dir", "/nonexistent/rig"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "start 3 local RabbitMQ node(s) in /nonexistent/rig" in out
    assert "links" in out and "kill_node most-leaders" in out and "full_outage" in out
    assert "<UTC timestamp>-demo" in out
    assert "duration: about" in out


def test_demo_is_run_demo() -> None:
    a = CliRunner().invoke(app, ["demo", "--dry-run", "--cluster-dir", "/nonexistent/rig"])
    b = CliRunner().invoke(app, ["run", "demo", "--dry-run", "--cluster-dir", "/nonexistent/rig"])
    assert a.exit_code == b.exit_code == 0
    assert a.output.replace(str(ROOT / "scenarios" / "demo.toml"), "demo") == b.output.replace(
        str(ROOT / "scenarios" / "demo.toml"), "demo"
    )


def test_a_broken_scenario_is_a_usage_error_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nduration = "1m"\n[traffic]\nrate = "fast"\n')
    result = CliRunner().invoke(app, ["run", str(bad), "--dry-run"])
    assert result.exit_code == 2
    assert "line 4: traffic.rate: Input should be a valid number" in result.output


def test_drill_help_stays_light() -> None:
    # The run command's heavy parts (runner, chaos, reports, matplotlib) load only inside the command.
    code = "import sys, harness.cli; print(sorted(m for m in sys.modules if m.startswith(('harness.drill.runner', 'matplotlib', 'chaos.runner'))))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_slo_file_is_the_one_reports_read(tmp_path: Path) -> None:
    (tmp_path / "slo.toml").write_text(slo_toml({"availability": 0.99, "drain_s": False, "failover_s": 20}))
    slo = load_slo(tmp_path)
    assert (slo.availability, slo.drain_s, slo.failover_s, slo.intake_p99_ms) == (0.99, None, 20.0, 500.0)
    for name in ("demo", "soak"):
        sc = load(name, ROOT)
        (tmp_path / "slo.toml").write_text(slo_toml(sc.model.slo))
        assert load_slo(tmp_path) == sc.slo


def test_run_dir_names_sort_by_time() -> None:
    t = dt.datetime(2026, 1, 18, 10, 15, 0, tzinfo=dt.UTC)
    assert run_dir_name("demo", t) == "20260118T101500Z-demo"


class _Proc:
    def __init__(self, rc: int | None) -> None:
        self.returncode = rc


def test_the_traffic_check(tmp_path: Path) -> None:
    assert traffic_check(None, False, None, None, tmp_path).status == "skipped"
    assert traffic_check(_Proc(0), False, None, None, tmp_path).status == "passed"  # type: ignore[arg-type]
    failed = traffic_check(_Proc(3), False, None, None, tmp_path)  # type: ignore[arg-type]
    # A traffic generator that crashed is the harness's trouble: error (INCONCLUSIVE), never a FAIL.
    assert failed.status == "error" and "exited 3" in failed.message
    assert traffic_check(_Proc(-2), True, None, None, tmp_path).status == "skipped"  # type: ignore[arg-type]
    assert traffic_check(_Proc(0), False, None, "boom", tmp_path).status == "error"  # type: ignore[arg-type]


def _chaos(result: ExperimentResult | None, error: str | None = None, state: str = "done") -> ChaosThread:
    th = ChaosThread(None, None, 0.0, Path("/dev/null"))  # type: ignore[arg-type]
    th.result, th.error, th.state = result, error, state
    return th


def _result(**kw: Any) -> ExperimentResult:
    res = ExperimentResult("t", 1, 0.0)
    res.steady_before = [ProbeResult("nodes_up", True, 3, "3 up")]
    res.steady_after = [ProbeResult("nodes_up", True, 3, "3 up")]
    res.faults = [FaultOutcome(0, "kill_node", "2", "f-1", 1.0, 1.5, 9.0)]
    for k, v in kw.items():
        setattr(res, k, v)
    return res


@pytest.mark.parametrize(
    ("thread", "status", "words"),
    [
        (None, "skipped", "no chaos experiment"),
        (_chaos(None, state="stopped before it started"), "skipped", "never ran"),
        (_chaos(None, error="KeyError: x", state="error"), "error", "broke"),
        (_chaos(_result()), "passed", "1 fault(s) applied and undone"),
        (
            _chaos(_result(faults=[FaultOutcome(0, "partition", "halves", error="FaultError: no iptables")])),
            "error",
            "no iptables",
        ),
        (
            _chaos(_result(steady_before=[ProbeResult("nodes_up", False, 2, "2 up")])),
            "error",
            "before the method",
        ),
        (
            _chaos(_result(steady_after=[ProbeResult("no_alarms", False, 1, "alarms: 1:mem")])),
            "error",
            "not back",
        ),
        (
            _chaos(_result(faults=[FaultOutcome(0, "kill_node", "2", skipped="stopped before it started")])),
            "passed",
            "not run",
        ),
    ],
)
def test_the_chaos_check(thread: ChaosThread | None, status: str, words: str) -> None:
    check = chaos_check(thread)
    assert check.name == "drill[chaos]"
    assert check.status == status and words in check.message, check.message
