"""``interrupts_deferred``: a Ctrl-C during "spawn and record the PID" waits for the record, and the
child is not born with SIGINT/SIGTERM blocked (it must stay stoppable)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from rig.procs import interrupts_deferred, stoppable_by_sigint


@pytest.fixture(autouse=True)
def _sigint_raises() -> Iterator[None]:
    """These tests judge the default Ctrl-C behaviour, whatever this pytest inherited (a CI step run in
    the background of a non-interactive shell starts with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_sigint_inside_the_block_is_raised_when_it_ends() -> None:
    reached_the_end = False
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        reached_the_end = True
    assert reached_the_end, "the interrupt cut the block short"


def test_a_sigterm_inside_the_block_reaches_the_previous_handler_after_it() -> None:
    got: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: got.append(signum))
    try:
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            assert got == []
        assert got == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "handlers restored"
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_no_signal_no_side_effect() -> None:
    with interrupts_deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_child_spawned_inside_has_no_blocked_signals() -> None:
    with interrupts_deferred():
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import signal; print(sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    assert out.strip() == "[]"


def test_an_entry_point_started_with_sigint_ignored_still_stops_on_sigint() -> None:
    # The child starts as a shell's background command would: SIGINT ignored, kept by Python.
    code = (
        "import os, signal, sys, time\n"
        "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
        "from rig.procs import stoppable_by_sigint\n"
        "stoppable_by_sigint() if sys.argv[1] == 'restore' else None\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(0.5)\n"
        "    print('ignored')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )

    def run(mode: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", code, mode],
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        ).stdout.strip()

    assert run("inherit") == "ignored"  # the trap this guards against is real
    assert run("restore") == "interrupted"
    stoppable_by_sigint()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
