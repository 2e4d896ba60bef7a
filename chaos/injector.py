"""Applies faults with a journal, always undoes them, and heals what a crashed runner left.

Example::

    from chaos import FaultInjector, Journal
    from chaos.faults import Partition
    from rig.cluster import LocalCluster

    inj = FaultInjector(LocalCluster.attach(), Journal(Path("run/chaos/journal.jsonl")))
    with inj.applied(Partition("isolate:3")):
        ...                      # node 3 is cut off here
    # healed here, also on an exception or Ctrl-C
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.faults import FAULTS, Fault, FaultError, require_supported
from chaos.faults.partition import chain_exists, heal_chain
from chaos.journal import Journal
from chaos.links import LinkProxies
from rig import procs
from rig.cluster import Cluster, ClusterError, LocalCluster

log = logging.getLogger(__name__)


@dataclass
class ActiveFault:
    fault_id: str
    fault: Fault
    undo_record: dict[str, Any]
    detail: dict[str, Any]


class FaultInjector:
    def __init__(self, cluster: Cluster | None, journal: Journal, allow_external: bool = False) -> None:
        """``cluster`` may be None for runs that only break services (their faults need no broker)."""
        if cluster is not None and not cluster.owned and not allow_external:
            raise FaultError(
                "refusing to inject faults into a cluster the drill did not start; pass --allow-external"
            )
        self.cluster = cluster
        self.journal = journal

    def inject(self, fault: Fault, planned_s: float | None = None) -> ActiveFault:
        """Journal the fault (with its undo record) first, then apply it; a failed apply is undone.

        ``planned_s`` is how long the caller means to hold it (None: instant or open-ended); it is only
        journaled, so the report can set what happened against what was planned.
        """
        if self.cluster is not None:
            # Before the plan: a fault the provider cannot perform is refused with nothing journaled.
            require_supported([fault.kind], self.cluster.provider)
        undo_record = fault.plan(self.cluster)
        fault_id = Journal.new_fault_id()
        self.journal.write(
            "apply",
            fault_id,
            fault.kind,
            target=fault.target,
            params=fault.params,
            undo=undo_record,
            planned_s=planned_s,
        )
        try:
            detail = fault.apply(self.cluster, undo_record)
            self.journal.write("applied", fault_id, fault.kind, detail=detail)
        except BaseException as exc:
            log.warning("applying %s failed (%r): undoing", fault.describe(), exc)
            self._undo(fault_id, fault.kind, undo_record, reason=f"apply failed: {exc!r}")
            raise
        log.info("applied %s %s", fault_id, fault.describe())
        return ActiveFault(fault_id, fault, undo_record, detail)

    def undo(self, active: ActiveFault) -> dict[str, Any]:
        return self._undo(active.fault_id, active.fault.kind, active.undo_record)

    def _undo(
        self, fault_id: str, kind: str, undo_record: dict[str, Any], reason: str = ""
    ) -> dict[str, Any]:
        # When the undo started: a slow undo (a node that takes 15 s to rejoin) is then told apart
        # from a fault held long. Not an undo: open_faults() still counts the fault open.
        self.journal.write("undoing", fault_id, kind, reason=reason)
        try:
            detail = FAULTS[kind].undo(self.cluster, undo_record)
        except BaseException as exc:
            self.journal.write("undo_failed", fault_id, kind, error=str(exc))
            raise
        self.journal.write("undo", fault_id, kind, detail=detail, reason=reason)
        log.info("undone %s %s", fault_id, kind)
        return detail

    @contextlib.contextmanager
    def applied(self, fault: Fault, planned_s: float | None = None) -> Iterator[ActiveFault]:
        """The fault holds inside the block; its undo always runs (a rollback, in Chaos Toolkit's words).

        SIGINT and SIGTERM are held back from the moment the fault is journaled until the ``try`` that
        guarantees its undo is entered, so Ctrl-C can never land in between and leave it applied.
        """
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        active: ActiveFault | None = None
        try:
            active = self.inject(fault, planned_s)
            # A signal that arrived meanwhile is delivered here, inside the try: the undo below runs.
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            yield active
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            if active is not None:
                self.undo(active)

    def heal(self, system_dirs: Sequence[Path] = ()) -> HealReport:
        """Undo every fault the journal shows open, then sweep the rig for leftovers.

        Returns a :class:`HealReport`: a list of what it did, one line each (as before), plus
        ``unmended``, what it could not mend. A failed undo does not stop the others. ``system_dirs``:
        supervised systems whose replicas are swept too (a replica left SIGSTOPped is resumed).
        """
        report = HealReport()
        for f in self.journal.open_faults():
            if f.kind not in FAULTS:
                report.failed(f"unknown fault kind {f.kind!r} in the journal ({f.fault_id}): cannot undo it")
                continue
            what = f"{f.kind} {f.target}".strip()
            try:
                self._undo(f.fault_id, f.kind, f.undo, reason="heal")
            except Exception as exc:
                report.failed(f"undo of {what} ({f.fault_id}) failed: {_first_line(exc)}")
                continue
            report.did(f"undid {what} ({f.fault_id})")
        for d in system_dirs:
            for line in resume_frozen_replicas(d):
                report.did(line)
        if isinstance(self.cluster, LocalCluster) and self.cluster.is_running():
            lc = self.cluster
            # Belt and braces: a runner killed between two journal lines, or a journal lost.
            chain = f"DRILL{lc.spec.address_block}"
            try:
                if chain_exists(chain):
                    block = lc.state.nodes[0].host.rsplit(".", 1)[0]
                    heal_chain(chain, f"{block}.0/24")
                    report.did(f"removed leftover iptables chain {chain}")
            except FaultError as exc:
                report.failed(f"iptables chain {chain}: {_first_line(exc)}")
            links = LinkProxies.attach(lc.spec.run_dir)
            try:
                if links is not None and links.reset():
                    report.did("link proxies reset (all enabled, no toxics)")
            except Exception as exc:  # requests' errors: the proxy server answers or it does not
                report.failed(f"link proxies at {links.state.api_url if links else '?'}: {_first_line(exc)}")
            try:
                mended = lc.mend()
            except ClusterError as exc:
                report.failed(f"the rig: {_first_line(exc)}")
            else:
                for line in mended.done:
                    report.did(line)
                for line in mended.unmended:
                    report.failed(line)
        return report


class HealReport(list[str]):
    """What :meth:`FaultInjector.heal` did, one line each — a ``list[str]``, as heal returned before —
    and what it could not mend (``unmended``; each also in the list, prefixed ``NOT MENDED:``)."""

    def __init__(self) -> None:
        super().__init__()
        self.done: list[str] = []
        self.unmended: list[str] = []

    def did(self, line: str) -> None:
        self.done.append(line)
        self.append(line)

    def failed(self, line: str) -> None:
        self.unmended.append(line)
        self.append(f"NOT MENDED: {line}")

    def merge(self, other: HealReport) -> None:
        """Add another report's lines (heal of several journals, one report)."""
        for line in other.done:
            self.did(line)
        for line in other.unmended:
            self.failed(line)

    @property
    def ok(self) -> bool:
        """True when everything was mended."""
        return not self.unmended


def resume_frozen_replicas(system_dir: Path) -> list[str]:
    """SIGCONT for every replica of the supervised system in ``system_dir`` left SIGSTOPped (a pause
    fault whose undo never ran), and only for a process that is that system's replica (its environment
    names the system's directory: a recycled PID is left alone)."""
    from rig.supervisor import SystemHandle

    st = SystemHandle(system_dir).state()
    if st is None:
        return []
    out = []
    for r in st.get("replicas", []):
        pid = r.get("pid")
        if not pid or not procs.stopped(pid):
            continue
        if not _same_dir(procs.environ(pid).get("DRILL_RUN_DIR"), system_dir):
            continue
        procs.send(pid, signal.SIGCONT)
        out.append(f"resumed {r['service']}#{r['index']} (PID {pid}), left SIGSTOPped")
    return out


def _same_dir(text: str | None, path: Path) -> bool:
    return bool(text) and Path(text or "").resolve() == path.resolve()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
