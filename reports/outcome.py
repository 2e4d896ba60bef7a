"""The verdict of a run: PASS, FAIL or INCONCLUSIVE, and its exit code.

A chaos gate is only useful if its verdict can be trusted both ways: FAIL must mean the platform broke a
promise, never that the harness stumbled; PASS must mean customers were served. So a check ends in one of
four statuses, and the run in one of three outcomes (Jepsen's ``true`` / ``false`` / ``:unknown``)::

    check status   meaning                                              run outcome it can cause
    passed         the promise held
    skipped        no evidence for it (``--strict`` counts it a failure)
    failed         the platform broke the promise (lost, abandoned,    FAIL
                   duplicated, an objective missed)
    error          the harness could not carry out its plan (a fault    INCONCLUSIVE
                   not applied or not undone, the rig not whole, the
                   traffic generator crashed or dropped its own
                   messages, evidence damaged)

    any error   → INCONCLUSIVE (exit 3): the run proves nothing either way. Checks that failed too are
                  still listed, but they may be the harness's doing: rerun before blaming the release.
    any failure → FAIL (exit 1)
    otherwise   → PASS (exit 0)

Exit codes, the same for ``drill run``, ``drill demo`` and ``drill audit``: 0 PASS, 1 FAIL, 2 usage
error (a bad option or scenario file: the command never ran), 3 INCONCLUSIVE, 130 interrupted (Ctrl-C
or SIGTERM: a partial report is written).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final, Protocol

EXIT_PASS: Final = 0
EXIT_FAIL: Final = 1
#: Click's code for a usage error (bad option, bad file): kept for those, never a verdict.
EXIT_USAGE: Final = 2
EXIT_INCONCLUSIVE: Final = 3
EXIT_INTERRUPTED: Final = 130


class HasStatus(Protocol):
    """What the verdict needs of a check (:class:`reports.checks.CheckResult` has it)."""

    @property
    def status(self) -> str:
        """passed | failed | skipped | error."""
        ...


class Outcome(StrEnum):
    """What a run proved."""

    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"

    @property
    def exit_code(self) -> int:
        """The process exit code of this outcome."""
        return {Outcome.PASS: EXIT_PASS, Outcome.FAIL: EXIT_FAIL, Outcome.INCONCLUSIVE: EXIT_INCONCLUSIVE}[
            self
        ]


def decide(checks: Iterable[HasStatus], *, strict: bool = False) -> Outcome:
    """The outcome of a run from its checks (the table in the module docstring)."""
    statuses = [c.status for c in checks]
    if "error" in statuses:
        return Outcome.INCONCLUSIVE
    if "failed" in statuses or (strict and "skipped" in statuses):
        return Outcome.FAIL
    return Outcome.PASS
