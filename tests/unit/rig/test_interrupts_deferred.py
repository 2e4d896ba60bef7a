"""``interrupts_deferred``: a Ctrl-C during "spawn and record the PID" waits for the record, and the
child is not born with SIGINT/SIGTERM blocked (it must stay stoppable)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from rig.procs import interrupts_deferred


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
