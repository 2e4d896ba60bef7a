"""The chaos experiment of a drill, in a thread of its own beside the traffic."""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rundir.records import write_json

if TYPE_CHECKING:
    from chaos.experiment import Experiment
    from chaos.injector import FaultInjector
    from chaos.runner import ExperimentResult, ExperimentRunner

log = logging.getLogger(__name__)


class ChaosThread(threading.Thread):
    """The experiment in a thread of its own, from ``start_after`` seconds; :meth:`halt` stops it early
    (held faults are undone by their own threads, then the rollbacks heal). When it ends it writes its
    state and result to ``result_path``."""

    def __init__(
        self, experiment: Experiment, injector: FaultInjector, start_after: float, result_path: Path
    ):
        super().__init__(name="drill-chaos", daemon=True)
        self.experiment = experiment
        self.injector = injector
        self.start_after = start_after
        self.result_path = result_path
        self.runner: ExperimentRunner | None = None
        self.result: ExperimentResult | None = None
        self.error: str | None = None
        self.state = "waiting"
        self.halted = False
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        from chaos.runner import ExperimentRunner

        try:
            if self._halt.wait(self.start_after):
                self.state = "stopped before it started"
                return
            with self._lock:
                if self._halt.is_set():
                    self.state = "stopped before it started"
                    return
                self.runner = ExperimentRunner(self.experiment, self.injector)
            self.state = "running"
            self.result = self.runner.run()
            self.state = "done"
        except Exception as exc:  # a broken experiment must not take the drill down: it is a failed check
            log.exception("chaos experiment failed")
            self.error = f"{type(exc).__name__}: {exc}"
            self.state = "failed"
        finally:
            doc: dict[str, Any] = {"state": self.state, "error": self.error, "halted": self.halted}
            if self.result is not None:
                doc["result"] = self.result.to_json()
            with contextlib.suppress(OSError):
                write_json(self.result_path, doc)

    def halt(self) -> None:
        """Stop now: faults not started are skipped, held ones undone, then the rollbacks."""
        self.halted = True
        self._halt.set()
        with self._lock:
            if self.runner is not None:
                self.runner.settle_timeout = 0.0  # one look at the steady state, no waiting for it
                self.runner.stop.set()
