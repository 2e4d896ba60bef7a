"""Faults of the platform's services, through the supervisor's ``system.json`` (real PIDs, real signals).

Targets: ``SERVICE#N`` (one replica) or ``SERVICE`` (every replica, for the whole-service faults).
The system's run directory comes from the ``system_dir`` param, else ``DRILL_SYSTEM_DIR``, else
``.drill/system`` under the project root.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from chaos.faults.base import PROVIDERS, Fault, FaultError
from rig import procs
from rig.cluster import Cluster
from rig.supervisor import SupervisorError, SystemHandle

# Crash loops in progress in this process: token -> stop event (the journal carries the token).
_CRASH_LOOPS: dict[str, threading.Event] = {}


def _system(params: dict[str, Any] | None = None, undo: dict[str, Any] | None = None) -> SystemHandle:
    path = (
        (undo or {}).get("system_dir")
        or (params or {}).get("system_dir")
        or os.environ.get("DRILL_SYSTEM_DIR")
    )
    if not path:
        root = Path(os.environ.get("DRILL_ROOT", Path(__file__).resolve().parents[2]))
        path = str(root / ".drill" / "system")
    handle = SystemHandle(Path(path))
    if handle.state() is None:
        raise FaultError(f"no supervised system in {path}: start it with `drill system up`")
    return handle


def _replica(target: str) -> tuple[str, int]:
    name, sep, idx = target.partition("#")
    if not name or (sep and not idx.isdigit()):
        raise FaultError(f"bad service target {target!r}: use SERVICE#N")
    return name, int(idx or 0)


class _ReplicaFault(Fault):
    # The platform's replicas are our processes on this machine whoever runs the brokers.
    providers = PROVIDERS

    def plan(self, cluster: Cluster | None) -> dict[str, Any]:
        sys_ = _system(self.params)
        name, idx = _replica(self.target)
        try:
            pid = sys_.running_pid(name, idx)
        except SupervisorError as exc:
            raise FaultError(str(exc)) from exc
        return {"system_dir": str(sys_.run_dir), "service": name, "index": idx, "pid": pid}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        sys_ = _system(undo=undo)
        # The state file may still show the dead PID as running for a moment: wait for a new one.
        dead = undo["pid"] if not procs.alive(undo["pid"]) else None
        r = sys_.wait("running", undo["service"], undo["index"], timeout=60, not_pid=dead)
        return {"running": f"{undo['service']}#{undo['index']}", "pid": r["pid"]}


class KillReplica(_ReplicaFault):
    """SIGKILL one replica mid-flight; the supervisor restarts it. Undo: wait until it runs again."""

    kind = "kill_replica"

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        procs.send(undo["pid"], signal.SIGKILL)
        if not procs.wait_gone([undo["pid"]], timeout=10):
            raise FaultError(f"PID {undo['pid']} survived SIGKILL for 10 s")
        return {"killed": undo["pid"]}


class RestartReplica(_ReplicaFault):
    """Graceful restart of one replica (SIGTERM: finish in-flight work, then exit; the supervisor restarts it).

    Done when the successor is *ready* (its ready marker holds its PID), if the replica was ready before:
    a rolling restart that moved on when the new process merely existed took both intake replicas down
    at once (refused connections for ~6 s). A replica that never announced readiness is done when its
    successor runs.
    """

    kind = "restart_replica"
    instant = True
    ready_timeout_s = 60.0

    def plan(self, cluster: Cluster | None) -> dict[str, Any]:
        undo = super().plan(cluster)
        sys_ = _system(undo=undo)
        undo["was_ready"] = sys_.is_ready(sys_.replica(undo["service"], undo["index"]))
        return undo

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        t0 = time.monotonic()
        procs.send(undo["pid"], signal.SIGTERM)
        sys_ = _system(undo=undo)
        r = sys_.wait("running", undo["service"], undo["index"], timeout=60, not_pid=undo["pid"])
        out: dict[str, Any] = {"old_pid": undo["pid"], "new_pid": r["pid"]}
        if undo.get("was_ready"):
            deadline = t0 + self.ready_timeout_s
            while True:
                try:
                    r = sys_.replica(undo["service"], undo["index"])
                except SupervisorError:
                    r = {}
                if r.get("pid") not in (None, undo["pid"]) and sys_.is_ready(r):
                    out["new_pid"] = r["pid"]
                    break
                if time.monotonic() > deadline:
                    raise FaultError(
                        f"{undo['service']}#{undo['index']} restarted (PID {r.get('pid')}) but not ready "
                        f"after {self.ready_timeout_s:.0f} s"
                    )
                time.sleep(0.05)
        out["ready_s" if undo.get("was_ready") else "running_s"] = round(time.monotonic() - t0, 2)
        return out


class PauseReplica(_ReplicaFault):
    """SIGSTOP one replica (alive but silent: its unacked messages stay with it). Undo: SIGCONT."""

    kind = "pause_replica"

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        procs.send(undo["pid"], signal.SIGSTOP)
        return {"paused": undo["pid"]}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        if procs.stopped(undo["pid"]):  # the very PID we froze, and only if it is still frozen
            procs.send(undo["pid"], signal.SIGCONT)
        return super().undo(cluster, undo)


class CrashLoop(_ReplicaFault):
    """One replica is killed each time it comes back, for the fault's duration. Undo: let it live."""

    kind = "crash_loop"

    def plan(self, cluster: Cluster | None) -> dict[str, Any]:
        return {**super().plan(cluster), "token": uuid.uuid4().hex}

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        stop = _CRASH_LOOPS[undo["token"]] = threading.Event()
        sys_ = _system(undo=undo)

        def loop() -> None:
            while not stop.is_set():
                try:
                    pid = sys_.replica(undo["service"], undo["index"]).get("pid")
                except SupervisorError:
                    pid = None
                if pid and procs.alive(pid):
                    procs.send(pid, signal.SIGKILL)
                stop.wait(0.05)

        threading.Thread(target=loop, name=f"crash-loop-{undo['service']}", daemon=True).start()
        return {"looping": f"{undo['service']}#{undo['index']}"}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        stop = _CRASH_LOOPS.pop(undo.get("token", ""), None)
        if stop is not None:
            stop.set()
        # The supervisor has backed off after the repeated crashes: give it up to its longest backoff,
        # and accept only a PID that is really alive (the file may still name one the loop killed).
        sys_ = _system(undo=undo)
        deadline = time.monotonic() + 60
        while True:
            r = sys_.wait(
                "running", undo["service"], undo["index"], timeout=max(1.0, deadline - time.monotonic())
            )
            if procs.alive(r["pid"]) and not procs.stopped(r["pid"]):
                return {"running": f"{undo['service']}#{undo['index']}", "pid": r["pid"]}
            if time.monotonic() > deadline:
                raise FaultError(f"{undo['service']}#{undo['index']} did not come back after the crash loop")
            time.sleep(0.1)


class StopService(Fault):
    """Every replica of one service gone for the duration (a whole part of the platform down).

    ``mode=kill`` SIGKILLs them (a crash), ``mode=stop`` stops them gracefully; either way they are
    scaled to 0 so they stay down. Undo: scale back to the count they had.
    """

    kind = "stop_service"
    providers = PROVIDERS  # our replicas, whoever runs the brokers

    def plan(self, cluster: Cluster | None) -> dict[str, Any]:
        sys_ = _system(self.params)
        try:
            reps = [r for r in sys_.replicas(self.target) if r["state"] != "stopped"]
        except SupervisorError as exc:
            raise FaultError(str(exc)) from exc
        mode = self.params.get("mode", "kill")
        if mode not in ("kill", "stop"):
            raise FaultError(f"stop_service mode must be kill or stop, not {mode!r}")
        return {"system_dir": str(sys_.run_dir), "service": self.target, "replicas": len(reps),
                "pids": [r["pid"] for r in reps if r.get("pid")], "mode": mode}  # fmt: skip

    def apply(self, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        sys_ = _system(undo=undo)
        if undo["mode"] == "kill":
            for pid in undo["pids"]:
                procs.send(pid, signal.SIGKILL)
            procs.wait_gone(undo["pids"], timeout=10)
        sys_.scale(undo["service"], 0)
        for i in range(undo["replicas"]):
            sys_.wait("stopped", undo["service"], i, timeout=60)
        return {"down": undo["service"], "replicas": undo["replicas"]}

    @classmethod
    def undo(cls, cluster: Cluster | None, undo: dict[str, Any]) -> dict[str, Any]:
        sys_ = _system(undo=undo)
        sys_.scale(undo["service"], undo["replicas"])
        t0 = time.monotonic()
        for i in range(undo["replicas"]):
            sys_.wait("running", undo["service"], i, timeout=60)
        return {"up": undo["service"], "seconds": round(time.monotonic() - t0, 2)}
