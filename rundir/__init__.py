"""The run directory: the one place that knows its file names and the shape of its records.

A drill run (``.drill/runs/<UTC time>-<name>/``, written by ``harness.drill``), a system run
(``drill system up``), the simulator's and Locust's runs all share this layout; every package that
writes or reads one of these files names it through here, never with a string literal of its own.
Paths are relative to the run directory: ``run_dir / rundir.PIDS``.

The records (what the lines and documents hold) are in :mod:`rundir.records`.

This package is a leaf: it imports nothing of the project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

# ------------------------------------------------------------------ the drill's own files
#: The scenario as run (a copy of the drill scenario file).
SCENARIO: Final = Path("scenario.toml")
#: The run's objectives (``reports.slo``'s format).
SLO: Final = Path("slo.toml")
#: The plan printed before the run (phases, the chaos timeline).
PLAN: Final = Path("plan.txt")
#: The drill runner's log.
DRILL_LOG: Final = Path("drill.log")
#: Every PID the run started (:class:`rundir.records.Pids`); written before each spawn.
PIDS: Final = Path("pids.json")
#: The run's phases, notes and, at the very end, its ``exit_code`` and verdict.
DRILL: Final = Path("drill.json")
#: What the final drain found (``rig.drain.DrainResult.to_json``).
DRAIN: Final = Path("drain.json")

# ------------------------------------------------------------------ the system (the supervisor's)
#: The services to run (the supervisor's spec format).
SERVICES: Final = Path("services.toml")
#: The supervisor's state: its PID, every replica's PID and state.
SYSTEM: Final = Path("system.json")
#: Replica counts asked for by ``drill system scale``.
DESIRED: Final = Path("desired.json")
#: Each replica's log (``<service>.<replica>.log``) and the supervisor's.
LOGS_DIR: Final = Path("logs")
#: Each replica's readiness marker (``<service>.<replica>``, holding its PID).
READY_DIR: Final = Path("ready")
#: The supervisor's own log.
SUPERVISOR_LOG: Final = Path("supervisor.log")


def ready_marker(service: str, replica: int) -> Path:
    """The readiness marker of ``service``'s replica ``replica`` (``ready/<service>.<replica>``)."""
    return READY_DIR / f"{service}.{replica}"


# ------------------------------------------------------------------ secrets (mode 0600)
SECRETS_DIR: Final = Path("secrets")
#: Every service's broker user and password and the nodes, as provisioned.
PLATFORM_SECRETS: Final = SECRETS_DIR / "platform.json"
#: The same, pointing at the link proxies when the run has link faults.
SERVICES_SECRETS: Final = SECRETS_DIR / "platform-services.json"
#: The retailers (API keys, webhook secrets) shared by intake, quoting and the traffic.
RETAILERS: Final = SECRETS_DIR / "retailers.json"
#: Where intake and quoting look for the retailers when no file is named (``DRILL_RETAILERS``).
RETAILERS_FALLBACK: Final = Path("retailers.json")

# ------------------------------------------------------------------ traffic
SIMULATOR_DIR: Final = Path("simulator")
#: The simulator's ledger: the audit's ground truth.
SIMULATOR_LEDGER: Final = SIMULATOR_DIR / "ledger.jsonl"
#: Present while the simulator has finished its run and only holds its notification receiver.
RECEIVER_HOLDING: Final = SIMULATOR_DIR / "receiver.holding"
#: What the simulator's run did (its summary, written at its end).
SIMULATOR_SUMMARY: Final = SIMULATOR_DIR / "summary.json"
#: The retailers the simulator made up when it was given none.
SIMULATOR_RETAILERS: Final = SIMULATOR_DIR / "retailers.json"
#: The simulator subprocess's stdout and stderr.
SIMULATOR_OUT: Final = Path("simulator.out")
LOCUST_DIR: Final = Path("locust")
#: Locust's ledger of acknowledged requests (each process writes ``ledger-<pid>.jsonl``, merged here).
LOCUST_LEDGER: Final = LOCUST_DIR / "ledger.jsonl"
#: Locust's master and workers (a JSON list of PIDs, the master first).
LOCUST_PIDS: Final = LOCUST_DIR / "pids.json"
#: The retailers Locust's users made up when they were given none.
LOCUST_RETAILERS: Final = LOCUST_DIR / "retailers.json"


def locust_ledger_part(pid: int) -> Path:
    """The ledger of one Locust process, merged into :data:`LOCUST_LEDGER` at the end."""
    return LOCUST_DIR / f"ledger-{pid}.jsonl"


# ------------------------------------------------------------------ chaos
CHAOS_DIR: Final = Path("chaos")
#: The chaos journal (:mod:`rundir.records`: one line per fault event).
JOURNAL: Final = CHAOS_DIR / "journal.jsonl"
#: The experiment's result, written when its thread ends.
CHAOS_RESULT: Final = CHAOS_DIR / "result.json"

# ------------------------------------------------------------------ samples
#: CPU and memory per role, one line a second (``rig.resources``).
RESOURCES: Final = Path("resources.jsonl")
#: ``drill bench platform``'s results, machine readable: the ceiling, the idle cost, every step.
BENCH: Final = Path("bench.json")
#: Every queue's depth and every outbox's pending rows (:class:`rundir.records.QueueDepth`).
QUEUES: Final = Path("metrics") / "queues.jsonl"

# ------------------------------------------------------------------ the audit
#: Where ``drill audit`` and ``drill report`` write their reports by default (a drill writes them at
#: the top of the run directory).
AUDIT_DIR: Final = Path("audit")
#: Where the platform's databases are, for the audit (``reports.audit.write_platform_config``).
AUDIT_CONFIG: Final = Path("audit.json")
REPORT_JSON: Final = Path("report.json")
JUNIT_XML: Final = Path("junit.xml")
SUMMARY_MD: Final = Path("summary.md")
REPORT_HTML: Final = Path("report.html")
