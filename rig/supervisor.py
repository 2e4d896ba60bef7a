"""A process supervisor for the platform's services: N replicas per service, each its own OS process.

Written by hand (not supervisord/circus) because chaos must see and signal each replica's real PID,
and the drill needs the whole state in one JSON file it can read from any process.

- ``Supervisor.run()`` is the supervisor process: it starts every replica in its own session, restarts
  a replica that exits with exponential backoff (1 s, 2 s, 4 s … capped at 30 s; a replica that stays
  up 10 s comes back at once and resets its backoff), reads the desired replica counts from ``desired.json`` (written by
  ``drill system scale``), and writes ``system.json`` (PIDs, states, restarts, last exit) after every
  change. SIGTERM/SIGINT: every replica gets SIGTERM (a graceful shutdown: in-flight work is finished
  and acked), then SIGKILL after a grace period.
- A replica that is SIGSTOPped (a chaos pause) is left alone: it is alive.
- ``SystemHandle`` is what the CLI, tests and chaos use from other processes: start the supervisor in
  the background, read the state, kill/pause/resume/restart one replica by its recorded PID, scale,
  and stop everything — also after the supervisor itself was SIGKILLed (replicas are then stopped by
  the PIDs in ``system.json``).

Spec (TOML)::

    [[service]]
    name = "intake"
    argv = ["{python}", "-m", "system.intake"]
    replicas = 2
    env = { DRILL_HTTP_PORT = "{port:8080+replica}" }

``{python}`` is this interpreter; ``{replica}`` the replica index (0-based); ``{port:BASE+replica}`` a
port computed per replica; ``{run_dir}`` the run directory.

Every replica gets the supervisor's environment, then ``DRILL_SERVICE`` (the service's name),
``DRILL_REPLICA``, ``DRILL_RUN_DIR`` and ``DRILL_READY_FILE`` (``<run dir>/ready/<spec name>.<replica>``:
where the replica announces it is ready, read by :meth:`SystemHandle.is_ready`), then the spec's ``env``.
A spec may thus set ``DRILL_SERVICE`` itself (the intake relay runs as service ``intake``: the same broker
user and DB as the HTTP replicas); the last three are always the supervisor's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import rundir
from rig import procs as rig_procs

log = logging.getLogger(__name__)

STATE = str(rundir.SYSTEM)
DESIRED = str(rundir.DESIRED)
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 10.0
GRACE = 15.0


class SupervisorError(Exception):
    """A bad spec, a supervisor already running, an unknown service or replica: the message says which."""


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: list[str]
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)


def load_spec(path: Path) -> list[ServiceSpec]:
    """Read a services spec; errors name the file and the service."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SupervisorError(f"{path}: {exc}") from exc
    out = []
    for i, raw in enumerate(data.get("service", [])):
        where = f"{path}: service[{i}]"
        unknown = set(raw) - {"name", "argv", "replicas", "env"}
        if unknown:
            raise SupervisorError(f"{where}: unknown key(s) {sorted(unknown)}")
        if not isinstance(raw.get("name"), str) or not re.fullmatch(r"[a-z][a-z0-9-]*", raw["name"]):
            raise SupervisorError(f"{where}: name must be lowercase letters, digits and dashes")
        argv = raw.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise SupervisorError(f"{where} ({raw['name']}): argv must be a non-empty list of strings")
        replicas = raw.get("replicas", 1)
        if not isinstance(replicas, int) or replicas < 0:
            raise SupervisorError(f"{where} ({raw['name']}): replicas must be an integer >= 0")
        out.append(
            ServiceSpec(raw["name"], argv, replicas, {k: str(v) for k, v in raw.get("env", {}).items()})
        )
    if len({s.name for s in out}) != len(out):
        raise SupervisorError(f"{path}: service names must be unique")
    return out


def _expand(text: str, replica: int, run_dir: Path) -> str:
    def port(m: re.Match[str]) -> str:
        return str(int(m.group(1)) + replica)

    text = re.sub(r"\{port:(\d+)\+replica\}", port, text)
    return (
        text.replace("{python}", sys.executable)
        .replace("{replica}", str(replica))
        .replace("{run_dir}", str(run_dir))
    )


def replica_env(spec: ServiceSpec, replica: int, run_dir: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of one replica (the precedence in the module docstring)."""
    env = {**base, "DRILL_SERVICE": spec.name}
    env.update({k: _expand(v, replica, run_dir) for k, v in spec.env.items()})
    env.update(
        DRILL_REPLICA=str(replica),
        DRILL_RUN_DIR=str(run_dir),
        DRILL_READY_FILE=str(run_dir / rundir.ready_marker(spec.name, replica)),
    )
    return env


@dataclass
class ReplicaState:
    service: str
    index: int
    pid: int | None = None
    state: str = "starting"  # running | paused | backoff | stopped
    started_at: float | None = None
    restarts: int = 0
    last_exit: int | None = None
    next_start: float = 0.0
    backoff: float = BACKOFF_FIRST
    log: str = ""


class Supervisor:
    """The supervisor process itself (``python -m rig.supervisor RUN_DIR SPEC``)."""

    def __init__(self, run_dir: Path, specs: list[ServiceSpec]) -> None:
        self.run_dir = run_dir
        self.specs = {s.name: s for s in specs}
        self.replicas: dict[tuple[str, int], ReplicaState] = {}
        self.popens: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def desired(self) -> dict[str, int]:
        want = {name: s.replicas for name, s in self.specs.items()}
        with contextlib.suppress(FileNotFoundError, ValueError):
            want.update(
                {k: int(v) for k, v in json.loads((self.run_dir / DESIRED).read_text()).items() if k in want}
            )
        return want

    def _spawn(self, r: ReplicaState) -> None:
        spec = self.specs[r.service]
        logs = self.run_dir / rundir.LOGS_DIR
        logs.mkdir(parents=True, exist_ok=True)
        r.log = str(logs / f"{r.service}-{r.index}.log")
        env = replica_env(spec, r.index, self.run_dir, os.environ)
        with open(r.log, "ab") as out:
            proc = subprocess.Popen(
                [_expand(a, r.index, self.run_dir) for a in spec.argv],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.popens[proc.pid] = proc
        r.pid, r.state, r.started_at = proc.pid, "running", time.time()

    def _reap(self) -> bool:
        changed = False
        for r in self.replicas.values():
            if r.pid is None:
                continue
            proc = self.popens.get(r.pid)
            code = proc.poll() if proc is not None else (None if rig_procs.alive(r.pid) else -1)
            if code is None:
                paused = rig_procs.stopped(r.pid)
                if (r.state == "paused") != paused:
                    r.state, changed = ("paused" if paused else "running"), True
                continue
            self.popens.pop(r.pid, None)
            lived = time.time() - (r.started_at or time.time())
            if lived >= STABLE_AFTER:
                # A replica that had been healthy (e.g. killed by chaos) comes back at once.
                wait, r.backoff = 0.0, BACKOFF_FIRST
            else:
                # Crashing again soon after a start: back off, so a crash loop costs little.
                wait, r.backoff = r.backoff, min(BACKOFF_MAX, r.backoff * 2)
            r.last_exit, r.pid, r.state = code, None, "backoff"
            r.next_start = time.monotonic() + wait
            log.warning("%s#%d exited with %s after %.1f s", r.service, r.index, code, lived)
            changed = True
        return changed

    def _converge(self) -> bool:
        changed = False
        for name, want in self.desired().items():
            for i in range(max(want, 1 + max((k[1] for k in self.replicas if k[0] == name), default=-1))):
                key = (name, i)
                r = self.replicas.get(key)
                if i >= want:  # scaled down: stop it for good
                    if r is not None and r.state != "stopped":
                        self._terminate([r])
                        r.state, changed = "stopped", True
                    continue
                if r is None:
                    r = self.replicas[key] = ReplicaState(name, i)
                if r.state in ("starting", "stopped") or (
                    r.state == "backoff" and time.monotonic() >= r.next_start
                ):
                    if r.state == "backoff":
                        r.restarts += 1
                    self._spawn(r)
                    changed = True
        return changed

    def _terminate(self, replicas: list[ReplicaState], grace: float = GRACE) -> None:
        pids = [r.pid for r in replicas if r.pid]
        for pid in pids:
            rig_procs.send(pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
            rig_procs.send(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(self._alive(p) for p in pids):
            time.sleep(0.05)
        for pid in pids:
            if self._alive(pid):
                rig_procs.kill_group(pid)
        rig_procs.wait_gone(pids, timeout=5)
        for r in replicas:
            if r.pid:
                self.popens.pop(r.pid, None)
            r.pid = None

    def _alive(self, pid: int) -> bool:
        proc = self.popens.get(pid)
        return proc.poll() is None if proc is not None else rig_procs.alive(pid)

    def write_state(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "updated_at": time.time(),
            "stopping": self.stopping,
            "replicas": [
                asdict(r) for r in sorted(self.replicas.values(), key=lambda r: (r.service, r.index))
            ],
        }
        tmp = self.run_dir / f".{STATE}.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.run_dir / STATE)

    def run(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.write_state()
        last_write = 0.0
        while not self.stopping:
            changed = self._reap() | self._converge()
            if changed or time.monotonic() - last_write > 1.0:
                self.write_state()
                last_write = time.monotonic()
            time.sleep(0.05)
        self.write_state()
        self._terminate([r for r in self.replicas.values() if r.pid])
        for r in self.replicas.values():
            r.state = "stopped"
        self.write_state()


class SystemHandle:
    """The supervised system as other processes see it, through ``system.json``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    @classmethod
    def start(
        cls, run_dir: Path, spec_path: Path, timeout: float = 30.0, env: Mapping[str, str] | None = None
    ) -> SystemHandle:
        """Start the supervisor in the background and wait until every wanted replica runs.

        ``env`` is added to this process's environment for the supervisor, hence for every replica.
        """
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = cls(run_dir)
        st = handle.state()
        if st and rig_procs.alive(st.get("supervisor_pid")):
            raise SupervisorError(
                f"a supervisor already runs for {run_dir} (PID {st['supervisor_pid']}); `drill system down` first"
            )
        specs = load_spec(spec_path)
        (run_dir / DESIRED).unlink(missing_ok=True)
        with open(run_dir / rundir.SUPERVISOR_LOG, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "rig.supervisor", str(run_dir), str(spec_path)],
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        want = sum(s.replicas for s in specs)
        deadline = time.monotonic() + timeout
        while True:
            st = handle.state()
            if (
                st
                and st.get("supervisor_pid") == proc.pid
                and sum(r["state"] == "running" for r in st["replicas"]) >= want
            ):
                return handle
            if proc.poll() is not None:
                raise SupervisorError(
                    f"the supervisor exited ({proc.returncode}); see {run_dir / 'supervisor.log'}"
                )
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"not every replica was running after {timeout:.0f} s; see {run_dir / 'logs'}"
                )
            time.sleep(0.05)

    def state(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.run_dir / STATE).read_text())
            return data
        except (FileNotFoundError, ValueError):
            return None

    def replicas(self, service: str | None = None) -> list[dict[str, Any]]:
        st = self.state()
        if st is None:
            raise SupervisorError(f"no supervised system in {self.run_dir}; start it with `drill system up`")
        reps = [r for r in st["replicas"] if service is None or r["service"] == service]
        if service is not None and not reps:
            raise SupervisorError(
                f"no service {service!r}; services: {sorted({r['service'] for r in st['replicas']})}"
            )
        return reps

    def replica(self, service: str, index: int) -> dict[str, Any]:
        for r in self.replicas(service):
            if r["index"] == index:
                return r
        raise SupervisorError(f"{service} has no replica #{index}")

    def running_pid(self, service: str, index: int) -> int:
        pid = self.replica(service, index).get("pid")
        if not pid or not rig_procs.alive(pid):
            raise SupervisorError(f"{service}#{index} is not running")
        return int(pid)

    def signal(self, service: str, index: int, sig: signal.Signals) -> int:
        pid = self.running_pid(service, index)
        rig_procs.send(pid, sig)
        return pid

    def wait(
        self, cond: str, service: str, index: int, timeout: float = 30.0, not_pid: int | None = None
    ) -> dict[str, Any]:
        """Wait until the replica's state is ``cond`` (and, optionally, its PID differs from not_pid)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                r: dict[str, Any] | None = self.replica(service, index)
            except SupervisorError:
                r = None  # a replica just scaled up appears with the supervisor's next write
            if r is not None and r["state"] == cond and (not_pid is None or r.get("pid") != not_pid):
                return r
            if time.monotonic() > deadline:
                now = r["state"] if r is not None else "absent"
                raise SupervisorError(f"{service}#{index} not {cond} after {timeout:.0f} s (it is {now})")
            time.sleep(0.05)

    def ready_marker(self, service: str, index: int) -> Path:
        """The file a platform service's replica writes once it consumes (``system/platform/runtime.py``)."""
        return self.run_dir / rundir.ready_marker(service, index)

    def is_ready(self, replica: dict[str, Any]) -> bool:
        """Whether a replica (a row of :meth:`replicas`) runs and has written its ready marker.

        A marker holds the PID that wrote it, so a SIGKILLed predecessor's leftover does not count. A
        process may name its marker after the service it runs as (the intake relay runs as ``intake``),
        so any marker holding the replica's PID counts too.
        """
        pid = replica.get("pid")
        if not pid or not rig_procs.alive(pid):
            return False
        own = _read_marker(self.ready_marker(replica["service"], replica["index"]))
        if own is not None and (not own.isdigit() or int(own) == pid):
            return True
        ready = self.run_dir / rundir.READY_DIR
        markers = sorted(ready.glob("*")) if ready.is_dir() else []
        return any(_read_marker(m) == str(pid) for m in markers)

    def scale(self, service: str, replicas: int) -> None:
        self.replicas(service)  # validates the name
        path = self.run_dir / DESIRED
        try:
            desired = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            desired = {}
        desired[service] = replicas
        path.write_text(json.dumps(desired))

    def stop(self, timeout: float = GRACE + 10) -> None:
        """Stop the supervisor (which stops its replicas gracefully); if it is gone, stop replicas by PID."""
        st = self.state()
        if st is None:
            raise SupervisorError(f"no supervised system in {self.run_dir}")
        sup: int | None = st.get("supervisor_pid")
        if sup and rig_procs.alive(sup):
            rig_procs.send(sup, signal.SIGTERM)
            rig_procs.wait_gone([sup], timeout=timeout)
        st = self.state() or st
        leftovers = [r["pid"] for r in st["replicas"] if r.get("pid") and rig_procs.alive(r["pid"])]
        for pid in leftovers:
            rig_procs.send(pid, signal.SIGCONT)
            rig_procs.send(pid, signal.SIGTERM)
        if not rig_procs.wait_gone(leftovers, timeout=GRACE):
            for pid in leftovers:
                rig_procs.kill_group(pid)
            rig_procs.wait_gone(leftovers, timeout=5)
        if sup and rig_procs.alive(sup):
            rig_procs.send(sup, signal.SIGKILL)
        (self.run_dir / STATE).unlink(missing_ok=True)
        (self.run_dir / DESIRED).unlink(missing_ok=True)


def _read_marker(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def main(argv: list[str]) -> None:
    logging.basicConfig(
        level=logging.INFO, format='{"ts": %(created)f, "level": "%(levelname)s", "msg": "%(message)s"}'
    )
    run_dir, spec = Path(argv[0]), Path(argv[1])
    Supervisor(run_dir, load_spec(spec)).run()


if __name__ == "__main__":
    main(sys.argv[1:])
