"""system/shutdown.py with real processes and real signals: a graceful stop that cannot end is forced
(exit 1, every thread's stack in stderr); one that ends is untouched (exit 0, no stack)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

CHILD = """
import asyncio, signal, sys, threading
from system.shutdown import stop_with_deadline

STUCK = sys.argv[1] == "stuck"

async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop_with_deadline(stop.set, 1.5))
    if STUCK:  # a non-daemon thread nobody stops: the interpreter would wait for it forever
        threading.Thread(target=threading.Event().wait, name="forgotten").start()
    print("ready", flush=True)
    await stop.wait()

asyncio.run(main())
print("main returned", flush=True)
"""


def _run(mode: str) -> tuple[int, str, str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err, time.monotonic() - t0


def test_a_stop_that_cannot_end_is_forced_with_the_stacks_as_evidence() -> None:
    rc, out, err, took = _run("stuck")
    assert "main returned" in out  # the graceful part ran; only the exit hung
    assert rc == 1, (rc, err[-2000:])
    assert 1.4 <= took < 15, took
    assert "Thread 0x" in err and "wait" in err, err[-2000:]  # the forgotten thread's stack


def test_a_stop_that_ends_is_left_alone() -> None:
    rc, out, err, took = _run("clean")
    assert (rc, "main returned" in out) == (0, True), (rc, err[-2000:])
    assert "Thread 0x" not in err and took < 1.4, (took, err[-2000:])
