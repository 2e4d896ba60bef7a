"""The drill's own checks, set before the audit's in the report: did the harness carry out its plan?

``drill[completed]`` (every phase ran), ``drill[traffic]`` (the simulator and Locust ran to their end),
``drill[chaos]`` (every fault applied and undone, the steady state held) and ``drill[heal]`` (the rig
whole again). Each way they fail is the harness's trouble: ``error``, so the run is INCONCLUSIVE, never
FAIL (:mod:`reports.outcome`).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import rundir
from reports.checks import CheckResult

if TYPE_CHECKING:
    from harness.drill.chaos_thread import ChaosThread
    from harness.drill.run import DrillRun
    from loadtests.runner import LocustResult


def first_line(text: str, limit: int = 200) -> str:
    """A fault's error as one short line (rabbitmqctl's are pages long; drill.log has them whole)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def drill_checks(run: DrillRun, interrupted: bool, error: str | None, started: float) -> list[CheckResult]:
    """The four drill checks of ``run``, in the order the report lists them."""
    out = []
    if interrupted or error:
        out.append(CheckResult("drill[completed]", "error", f"PARTIAL run: {run.partial_reason(interrupted, error)}",
                               details={"phases": run.phases}))  # fmt: skip
    else:
        out.append(CheckResult("drill[completed]", "passed",
                               f"every phase ran ({time.time() - started:.0f} s so far)",
                               details={"phases": run.phases}))  # fmt: skip
    out.append(traffic_check(run.simulator, run.simulator_stopped, run.locust_result, run.locust_error,
                             run.run_dir))  # fmt: skip
    out.append(chaos_check(run.chaos))
    out.append(heal_check(run.injector is not None, run.heal_log, run.unmended))
    return out


def traffic_check(
    simulator: subprocess.Popen[bytes] | None,
    stopped_by_drill: bool,
    locust: LocustResult | None,
    locust_error: str | None,
    run_dir: Path,
) -> CheckResult:
    """``drill[traffic]``: the simulator (and Locust) ran to their end; a crash is the harness's trouble
    (``error``: INCONCLUSIVE), never the platform's."""
    name = "drill[traffic]"
    if simulator is None:
        return CheckResult(name, "skipped", "the traffic never started")
    rc = simulator.returncode
    details = {"simulator_exit": rc, "locust_exit": locust.exit_code if locust is not None else None}
    if stopped_by_drill:
        return CheckResult(name, "skipped", "the drill stopped the simulator before its end", details=details)
    if rc != 0:
        return CheckResult(
            name, "error", f"the simulator exited {rc}; see {run_dir / rundir.SIMULATOR_OUT}", details=details
        )
    if locust_error is not None:
        return CheckResult(name, "error", f"Locust failed: {locust_error}", details=details)
    # Locust exits 1 when some requests failed (expected under chaos); other codes mean it broke.
    if locust is not None and locust.exit_code not in (0, 1):
        return CheckResult(
            name,
            "error",
            f"Locust exited {locust.exit_code}; see {run_dir / rundir.LOCUST_DIR}",
            details=details,
        )
    extra = f"; Locust {locust.requests} requests" if locust is not None else ""
    return CheckResult(name, "passed", f"the simulator ran to its end{extra}", details=details)


def chaos_check(chaos: ChaosThread | None) -> CheckResult:
    """``drill[chaos]``: every fault applied and undone, the steady state held before and after.

    Each way this fails is the harness not carrying out its plan (a fault the rig could not apply or
    undo, a rig not whole after the method): ``error``, so the run is INCONCLUSIVE, never FAIL."""
    name = "drill[chaos]"
    if chaos is None:
        return CheckResult(name, "skipped", "no chaos experiment in this drill")
    if chaos.error is not None:
        return CheckResult(name, "error", f"the experiment broke: {chaos.error}")
    res = chaos.result
    if res is None:
        return CheckResult(name, "skipped", f"the experiment never ran ({chaos.state})")
    applied = sum(f.applied_at is not None for f in res.faults)
    errors = [f"{f.kind} {f.target}: {first_line(f.error)}".replace("  ", " ") for f in res.faults if f.error]
    skipped = sum(f.skipped is not None for f in res.faults)
    counts = {"faults": len(res.faults), "applied": applied, "errors": len(errors), "skipped": skipped}
    details = res.to_json()
    if not all(p.ok for p in res.steady_before):
        bad = "; ".join(p.message for p in res.steady_before if not p.ok)
        return CheckResult(
            name, "error", f"steady state not met before the method: {bad}", counts, details=details
        )
    if errors:
        return CheckResult(name, "error", f"{len(errors)} fault(s) failed: {'; '.join(errors[:3])}", counts,
                           {"errors": errors[:10]}, details)  # fmt: skip
    if res.unmended:
        return CheckResult(name, "error", f"the rollbacks could not mend: {'; '.join(res.unmended[:3])}",
                           counts, details=details)  # fmt: skip
    if res.steady_after and not all(p.ok for p in res.steady_after):
        bad = "; ".join(p.message for p in res.steady_after if not p.ok)
        return CheckResult(
            name, "error", f"steady state not back after the method: {bad}", counts, details=details
        )
    back = f"; steady state back after {res.recovery_seconds:g} s" if res.recovery_seconds is not None else ""
    cut = f", {skipped} not run (the traffic ended first)" if skipped else ""
    return CheckResult(
        name, "passed", f"{applied} fault(s) applied and undone{cut}{back}", counts, details=details
    )


def heal_check(healed: bool, did: list[str], unmended: list[str]) -> CheckResult:
    """``drill[heal]``: after the traffic the rig was made whole again (every fault undone, every node up
    and clustered, no alarm, no frozen replica) — or the harness says exactly what it could not mend, and
    the run proves nothing (``error``: INCONCLUSIVE)."""
    name = "drill[heal]"
    if not healed:
        return CheckResult(name, "skipped", "no rig to heal in this run")
    if unmended:
        return CheckResult(name, "error", "could not mend: " + "; ".join(unmended[:3]),
                           {"unmended": len(unmended)}, details={"unmended": unmended, "did": did})  # fmt: skip
    return CheckResult(name, "passed", f"the rig is whole ({len(did)} action(s))", details={"did": did})
