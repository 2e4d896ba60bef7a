"""Process helpers that only ever touch PIDs the rig recorded itself (never names)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path


def stoppable_by_sigint() -> None:
    """Make SIGINT raise KeyboardInterrupt in this process, whatever disposition it inherited.

    A non-interactive shell starts background commands (``cmd &``, as CI steps and nohup'd drills do)
    with SIGINT ignored, and Python keeps an inherited SIG_IGN. A drill or fault runner started that way
    would shrug off the SIGINT that must stop it, undo its faults and heal; so the entry points call
    this first. Children then inherit the default disposition (a Python handler resets on exec)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends, then act on them as usual.

    For "spawn a child, record its PID": a Ctrl-C that lands between the fork and the record (inside
    ``subprocess.Popen``, which then never returns the PID) would leave a child nobody knows of; CI saw
    a RabbitMQ node outlive the rig that way. A flag-setting handler, not ``pthread_sigmask``: a blocked
    mask would be inherited by the child, which must stay stoppable with SIGTERM.

    >>> with interrupts_deferred():
    ...     pid = 42  # spawn and record here
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives Python signal handlers
        return
    caught: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


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


def start_time(pid: int | None) -> float | None:
    """When the process started (seconds since the epoch, ±1 s: the kernel's boot time is whole
    seconds), or None when the PID is gone.

    What tells a recorded PID from a recycled one: a process that started after the record was made
    cannot be the one recorded.
    """
    if not pid:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (FileNotFoundError, ProcessLookupError, PermissionError, StopIteration):
        return None
    # Field 22 (starttime, in clock ticks since boot) counted after the ')' that ends the command name.
    ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def cmdline(pid: int | None) -> list[str]:
    """The process's argv ([] when it is gone or a kernel thread)."""
    if not pid:
        return []
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def environ(pid: int | None) -> dict[str, str]:
    """The environment the process started with ({} when it is gone or not readable)."""
    if not pid:
        return {}
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


@contextlib.contextmanager
def environment(updates: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``updates`` inside the block (children started there inherit them); the old
    values (or their absence) are back after it."""
    old = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
