"""Phase "run dir": the run directory, its log, the scenario, the objectives and the plan."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import rundir
from harness.drill.phases.cluster import describe_cluster
from harness.drill.plan import plan_lines
from harness.drill.run import DrillRun, run_dir_name


def slo_toml(slo: Mapping[str, float | bool]) -> str:
    """The scenario's ``[slo]`` table as ``RUN/slo.toml`` (reports/slo.py's format: false = off)."""
    lines = ["# The objectives of this run (from the drill scenario; absent keys: reports/slo.py defaults)."]
    for key, value in slo.items():
        lines.append(f"{key} = {'false' if value is False else repr(float(value))}")
    return "\n".join(lines) + "\n"


def prepare(run: DrillRun) -> logging.Handler:
    """Create the run directory (a new name when taken), log into it, write the scenario, the objectives
    and the plan, and print the plan. Returns the log handler (the runner removes it at the end)."""
    runs_dir = run.run_dir.parent
    runs_dir.mkdir(parents=True, exist_ok=True)
    for i in range(2, 100):
        if not run.run_dir.exists():
            break
        run.run_dir = runs_dir / f"{run_dir_name(run.m.name)}-{i}"
    run.run_dir.mkdir(parents=True)
    handler = logging.FileHandler(run.run_dir / rundir.DRILL_LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    # One line per management/HTTP request would bury what the drill log is for.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run.phase = "run dir"
    (run.run_dir / rundir.SCENARIO).write_text(run.sc.text)
    (run.run_dir / rundir.SLO).write_text(slo_toml(run.m.slo))
    cluster_text, starts = describe_cluster(run.sc, run.cluster_dir, run.given_cluster)
    plan = plan_lines(run.sc, cluster=cluster_text, run_dir=str(run.run_dir), starts_cluster=starts)
    (run.run_dir / rundir.PLAN).write_text("\n".join(plan) + "\n")
    for line in plan:
        run.say(line)
    run.save_pids()
    run.save_drill_doc()
    return handler
