"""The Typer commands: simulate (against nothing listening), plan digests, bench, bad scenario files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from simulator.cli import app

cli = CliRunner()


def test_simulate_survives_refused_connections_and_writes_ledger(
    tmp_path: Path, unused_port: Callable[[], int]
) -> None:
    target = f"http://127.0.0.1:{unused_port()}"
    res = cli.invoke(app, ["simulate", "--scenario", "steady", "--duration", "1.5s", "--seed", "4", "--rate", "20",
                           "--target", target, "--run-dir", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "offered=   20.0/s" in res.output and "accepted=0" in res.output
    done = next(line for line in res.output.splitlines() if line.startswith("done "))
    assert "accepted=0" in done and "unknown=" in done
    recs = [json.loads(line) for line in (tmp_path / "simulator" / "ledger.jsonl").read_text().splitlines()]
    assert recs[0]["kind"] == "run_started" and recs[-1]["kind"] == "run_finished"
    assert {r["outcome"] for r in recs if r["kind"] == "order_answer"} == {"unknown"}


def test_plan_digest_is_stable_and_seed_dependent() -> None:
    out = [cli.invoke(app, ["plan", "--scenario", "courier-outage", "--duration", "5s", "--seed", str(s)]).output
           for s in (42, 42, 43)]  # fmt: skip
    digest = [next(line for line in o.splitlines() if line.startswith("digest=")) for o in out]
    print(digest[0])
    assert digest[0] == digest[1] != digest[2]


def test_bench_prints_the_figure() -> None:
    res = cli.invoke(app, ["bench", "--duration", "0.5"])
    assert res.exit_code == 0 and "orders/s" in res.output


def test_bad_scenario_file_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[arrivals]\nrate = -3.0\nburst = 1\n")
    res = cli.invoke(app, ["simulate", "--scenario", str(bad), "--duration", "1s"])
    assert res.exit_code == 2
    assert f"{bad}: arrivals.rate: Input should be greater than 0" in res.output
    assert f"{bad}: arrivals.burst: unknown key" in res.output


def test_plan_digest_is_the_same_across_processes() -> None:
    # Different string-hash salts per process must not change anything (no hash()/set order leaks).
    outs = []
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        res = subprocess.run(
            [sys.executable, "-m", "simulator", "plan", "--scenario", "flash-sale", "--duration", "3s", "--seed", "7"],
            capture_output=True, text=True, env=env, check=True, timeout=60,
        )  # fmt: skip
        outs.append(next(line for line in res.stdout.splitlines() if line.startswith("digest=")))
    print(outs[0])
    assert outs[0] == outs[1]
