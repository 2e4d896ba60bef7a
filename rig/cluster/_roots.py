"""Debian roots that serve a RabbitMQ version the host's package is not: built once, cached, shared.

A root is ``debootstrap --variant=minbase --include=rabbitmq-server CODENAME`` (Debian 13: ~370 MB,
41-90 s here, mostly download). It is built into a temporary sibling and renamed into place only once
complete, with a marker file written last: a half-built root (a crash, a Ctrl-C, a full disk) is never
used, and the next run removes it and builds again. A lock file serialises builders, so two runs asking
for the same version at once build it once. debootstrap mounts ``proc``/``sys`` inside the target while
it configures packages; whatever is still mounted under a failed build is unmounted before the
directory is removed.

Example::

    root = ensure_root("trixie", Path(".drill/brokers"), say=print)   # builds on first use
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from rig import procs
from rig.cluster._errors import RootUnavailable
from rig.cluster.versions import DEBIAN_BIN, DEFAULT_MIRROR, debootstrap_command

log = logging.getLogger(__name__)

#: Written last into a complete root: its absence means "not a usable root".
MARKER = ".drill-broker-root"
#: debootstrap's per-package lines that belong to one stage of its progress.
_SAME_STAGE = {"Validating": "Retrieving", "Checking": "Retrieving"}


def root_ready(root: Path) -> bool:
    """A complete root: the marker written last, and the server script in place."""
    return (root / MARKER).is_file() and os.access(
        root / str(DEBIAN_BIN).lstrip("/") / "rabbitmq-server", os.X_OK
    )


def ensure_root(
    codename: str,
    brokers_dir: Path,
    *,
    say: Callable[[str], None],
    mirror: str = DEFAULT_MIRROR,
    timeout: float = 900.0,
) -> Path:
    """The root of Debian ``codename`` under ``brokers_dir``, built now if it is not there yet."""
    root = brokers_dir / codename
    if root_ready(root):
        return root
    if os.geteuid() != 0:
        raise RootUnavailable(
            f"RabbitMQ from Debian {codename} needs a root built with debootstrap and nodes run with chroot: "
            "both need root privileges"
        )
    if shutil.which("debootstrap") is None:
        raise RootUnavailable(
            f"building the Debian {codename} root needs debootstrap: `apt-get install -y debootstrap`"
        )
    brokers_dir.mkdir(parents=True, exist_ok=True)
    with _locked(brokers_dir / f".{codename}.lock", codename, say):
        if root_ready(root):  # another run built it while this one waited
            say(f"[broker] the Debian {codename} root was built by another run: {root}")
            return root
        _build(codename, root, say=say, mirror=mirror, timeout=timeout)
    return root


@contextlib.contextmanager
def _locked(path: Path, codename: str, say: Callable[[str], None]) -> Iterator[None]:
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"[broker] another run is building the Debian {codename} root: waiting for it")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build(codename: str, root: Path, *, say: Callable[[str], None], mirror: str, timeout: float) -> None:
    partial = root.with_name(f".{codename}.partial")
    if partial.exists() or root.exists():
        # Leftovers of a build that died (we hold the lock: nobody is building them now).
        for leftover in (partial, root):
            if leftover.exists():
                say(f"[broker] removing an incomplete root left by an earlier build: {leftover}")
                _remove(leftover)
    buildlog = root.with_name(f"{codename}.build.log")
    cmd = debootstrap_command(codename, partial, mirror)
    say(f"[broker] building a Debian {codename} root for RabbitMQ (once; cached in {root}): {' '.join(cmd)}")
    say(f"[broker] about 370 MB, 1-2 minutes; debootstrap's output goes to {buildlog}")
    t0 = time.monotonic()
    ok = False
    try:
        with open(buildlog, "w") as out:
            with procs.interrupts_deferred():  # a Ctrl-C inside Popen would leave an unrecorded debootstrap
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,  # its own group: a stop reaches its dpkg and wget too
                )
            try:
                _follow(proc, out, say, t0, timeout)
            except BaseException:
                procs.kill_group(proc.pid)  # the session our own child leads, nothing else
                proc.wait(timeout=30)
                raise
        if proc.returncode != 0:
            raise RootUnavailable(
                f"debootstrap of Debian {codename} failed (exit {proc.returncode}; no network to {mirror}?): "
                f"{_last_line(buildlog)} (whole log: {buildlog})"
            )
        if not os.access(partial / str(DEBIAN_BIN).lstrip("/") / "rabbitmq-server", os.X_OK):
            raise RootUnavailable(
                f"the Debian {codename} root has no {DEBIAN_BIN}/rabbitmq-server (see {buildlog})"
            )
        (partial / MARKER).write_text(
            f"{codename} built {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
        )
        os.rename(partial, root)
        ok = True
        say(f"[broker] Debian {codename} root ready in {time.monotonic() - t0:.0f} s: {root}")
    finally:
        if not ok and partial.exists():
            _remove(partial)


def _follow(
    proc: subprocess.Popen[str], out: IO[str], say: Callable[[str], None], t0: float, timeout: float
) -> None:
    """Copy debootstrap's output to the build log; say each new stage once (Retrieving, Extracting...)."""
    assert proc.stdout is not None
    stage = ""
    for line in proc.stdout:
        out.write(line)
        out.flush()
        words = line.split()
        if len(words) >= 2 and words[0] == "I:":
            # Retrieving and Validating alternate package by package: one stage.
            kind = _SAME_STAGE.get(words[1], words[1])
            if kind != stage:
                stage = kind
                say(f"[broker]   +{time.monotonic() - t0:3.0f} s {' '.join(words[1:])[:100]}")
        if time.monotonic() - t0 > timeout:
            raise RootUnavailable(f"debootstrap still running after {timeout:.0f} s: given up")
    proc.wait()


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
        if lines:
            return lines[-1].strip()
    return "(no output)"


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (deepest first), from /proc/self/mounts."""
    prefix = str(path.resolve())
    points: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 1:
                point = fields[1].replace("\\040", " ")
                if point == prefix or point.startswith(prefix + "/"):
                    points.append(point)
    return sorted(points, key=len, reverse=True)


def _remove(path: Path) -> None:
    """Unmount what a failed debootstrap left mounted inside ``path``, then delete it."""
    for point in _mounts_under(path):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    if _mounts_under(path):
        raise RootUnavailable(f"cannot remove {path}: still mounted at {_mounts_under(path)}")
    shutil.rmtree(path, ignore_errors=True)
