"""A deadline on a graceful stop: a process asked to stop that is still alive after it dies loudly.

Seen in a rolling-upgrade drill: a tracking replica logged "service stopped" after SIGTERM and then never
exited (something kept the interpreter alive: a non-daemon thread such as an unclosed aiosqlite
connection's). It held the single-active-consumer slot of every tracking shard, so its successor was
never started and the shards stalled. A graceful stop must end, one way or another: the standard
library's :func:`faulthandler.dump_traceback_later` writes every thread's stack to stderr (the replica's
log: the evidence) and ends the process with exit status 1 when the deadline passes; the supervisor then
starts a successor. Committed work is safe (SQLite commits are durable; unacked deliveries go back).

Example:
    >>> loop.add_signal_handler(signal.SIGTERM, stop_with_deadline(stop.set, 20.0))  # doctest: +SKIP
"""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import Callable

from system.logs import get_logger

log = get_logger(__name__)


def arm_stop_deadline(seconds: float) -> None:
    """Exit(1) with every thread's stack on stderr if this process still runs ``seconds`` from now."""
    faulthandler.dump_traceback_later(seconds, repeat=False, file=sys.stderr, exit=True)


def stop_with_deadline(stop: Callable[[], None], seconds: float) -> Callable[[], None]:
    """A signal handler: ask for the graceful stop, and give it ``seconds`` to finish."""

    def handler() -> None:
        if not getattr(handler, "armed", False):
            handler.armed = True  # type: ignore[attr-defined]
            log.info("stop requested; exit forced in %.0f s if still running", seconds)
            arm_stop_deadline(seconds)
        stop()

    return handler
