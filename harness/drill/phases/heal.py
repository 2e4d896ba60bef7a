"""Phase "heal": :meth:`chaos.injector.FaultInjector.heal` — the journal's open faults, then a sweep of the
rig (alarms, paused nodes, links, frozen replicas). What it could not mend makes the run INCONCLUSIVE
(``drill[heal]``)."""

from __future__ import annotations

from harness.drill.run import DrillRun


def heal(run: DrillRun) -> None:
    """Heal the rig through the run's injector (none: nothing to heal); log what was done."""
    assert run.injector is not None
    did = run.injector.heal(system_dirs=[run.run_dir])
    run.heal_log.extend(did)
    run.unmended.extend(did.unmended)
    for line in did or ["nothing to heal"]:
        run.say(line)
