"""Queue depths during a drill's traffic: ``<run>/metrics/queues.jsonl``, every queue every 2 s.

The per-fault *drain* figure of the report (heal → every queue back to its baseline,
``reports.faults.drain_time``) needs depth samples before, during and after each fault. Without them
the only samples were the final drain's, taken after the traffic stopped, and every fault "drained"
when the run ended (a 7-s pause showed a 198-s drain). :class:`QueueDepthSampler` is a thread the
runner starts with the traffic and stops before the final drain, which appends to the same file.

Each sample is :func:`rig.drain.measure`: the depth each queue gives itself to a passive declare
(management statistics lag for quorum queues), and the services' pending outbox rows. The queue list
comes from the management API once, then again every :data:`NAMES_EVERY_S`. A sample that fails (a
node killed or paused mid-sample) is logged and skipped: nothing here may stop the drill.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import rundir
from rig.drain import Measurement, measure, queue_names

log = logging.getLogger(__name__)

INTERVAL_S: Final = 2.0
#: How often the queue list is asked again (a queue declared mid-run is watched from then on).
NAMES_EVERY_S: Final = 15.0


class QueueDepthSampler:
    """Appends a :class:`rig.drain.Measurement` of ``vhost``'s queues and ``run_dir``'s outboxes
    to ``run_dir/metrics/queues.jsonl`` every ``interval_s``, in a daemon thread.

    Example::

        sampler = QueueDepthSampler(run_dir, mgmt_urls, ("admin", "pw"), amqp_urls, "drill", ignore=r"\\.retry\\.")
        sampler.start()
        ...  # traffic and faults
        sampler.stop()
    """

    def __init__(
        self,
        run_dir: Path,
        management_urls: list[str],
        auth: tuple[str, str],
        amqp_urls: list[str],
        vhost: str,
        ignore: str,
        interval_s: float = INTERVAL_S,
        sample: Callable[..., Measurement] = measure,
    ) -> None:
        self.run_dir = run_dir
        self.path = run_dir / rundir.QUEUES
        self._mgmt, self._auth, self._amqp = management_urls, auth, amqp_urls
        self._watch = re.compile(f"^{re.escape(vhost)}/")
        self._skip = re.compile(ignore)
        self.interval_s = interval_s
        self._sample = sample
        self.samples = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drill-queue-depths", daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop sampling; a sample in progress is not written once stopped (the drain owns the file next)."""
        self._stop.set()
        self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        names: list[tuple[str, str]] | None = None
        names_at = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if names is None or started - names_at >= NAMES_EVERY_S:
                    fresh = queue_names(self._mgmt, self._auth)
                    if fresh is not None:
                        names, names_at = fresh, started
                    elif names is None:
                        self.errors += 1
                        log.info("queue depth sample skipped: no management API answered")
                if names is not None:
                    m = self._sample(
                        self._mgmt, self._auth, self._amqp, self._outboxes(), self._watch, self._skip, names
                    )
                    if not self._stop.is_set():
                        with self.path.open("a") as fh:
                            fh.write(m.lines())
                        self.samples += 1
                    if m.errors:
                        self.errors += 1
                        log.info("queue depth sample incomplete", extra={"errors": m.errors[:3]})
            except Exception as exc:  # never stop the drill over a measurement
                self.errors += 1
                log.warning("queue depth sample failed", extra={"error": repr(exc)})
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def _outboxes(self) -> list[Path]:
        return sorted(self.run_dir.glob("*.db"))
