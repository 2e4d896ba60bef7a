"""Process helpers that only ever touch PIDs the rig recorded itself (never names)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def proc_state(pid: int) -> str | None:
    """The kernel's one-letter state (R, S, D, T, Z...) or None when the PID is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may contain spaces: the state follows the last ')'.
    return stat[stat.rindex(")") + 2]


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    state = proc_state(pid)
    return state is not None and state not in ("Z", "X")


def stopped(pid: int | None) -> bool:
    """True when the process is frozen by SIGSTOP."""
    return bool(pid) and proc_state(pid or 0) in ("T", "t")


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                out.extend(int(c) for c in (task / "children").read_text().split())
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def find_descendant(pid: int, name: str, timeout: float) -> int | None:
    """Breadth-first search of the process tree under ``pid`` for a process called ``name``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = [pid]
        while queue:
            p = queue.pop(0)
            if comm(p) == name:
                return p
            queue.extend(children(p))
        if not alive(pid):
            return None
        time.sleep(0.02)
    return None


def send(pid: int | None, sig: signal.Signals) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def kill_group(pgid: int | None, sig: signal.Signals = signal.SIGKILL) -> None:
    """Signal a whole process group the rig created with setsid (wrapper, VM and its helpers)."""
    if not pgid:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def reap(pid: int) -> None:
    """Collect our own zombie children so `alive` stops seeing them."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in pids:
            reap(p)
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False
