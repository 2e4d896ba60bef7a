"""Every knob of the load tests, read from ``DRILL_*`` environment variables.

Locust owns the command line (``--users``, ``--host``, ...), and its workers are separate processes
started by Locust itself, so the drill's own settings travel in the environment: a worker inherits
them from the process that started it (``loadtests.runner`` sets them for master and workers alike).

- ``DRILL_RUN_DIR``: run directory; ledgers go to ``<run>/locust/`` (unset: no ledger)
- ``DRILL_RETAILERS``: path of the ``retailers.json`` shared with the platform (unset: generated)
- ``DRILL_SEED``: seed of the generated retailers when ``DRILL_RETAILERS`` is unset (42)
- ``DRILL_LOADTEST_SEED``: seed of the order contents (``DRILL_SEED`` + 1000)
- ``DRILL_LOADTEST_TAG``: tag making this process's order refs unique (random per process)
- ``DRILL_HTTP_TIMEOUT``: seconds before an HTTP request is an ``unknown`` outcome (10)
- ``DRILL_WAIT_MIN/MAX``: think time of an HTTP user between tasks, seconds (0 / 0.2; equal: constant)
- ``DRILL_USER_RPS``: tasks per second per HTTP user (constant throughput, so load ∝ users); when
  set, wins over WAIT_MIN/MAX
- ``DRILL_RETRY_UNKNOWN``: retries of a create whose outcome is unknown, same key (1)
- ``DRILL_DUPLICATE_SHARE``: share of creates re-sent byte-identical on purpose (0.05)
- ``DRILL_UPDATE_SHARE``: share of ePOS orders followed by an ``order.updated`` (0.2)
- ``DRILL_OUT_OF_ORDER_SHARE``: share of those updates sent *before* the ``order.created`` (0.3)
- ``DRILL_SHAPE``: shape used by ``intake.py``: steady|step|doubles|spike (unset: none)
- ``DRILL_SHAPE_*``: shape parameters, see :mod:`loadtests.profiles`
- ``DRILL_AMQP_URL``: broker URL of :mod:`loadtests.amqp_user`
- ``DRILL_AMQP_QUEUE``: quorum queue it publishes to (``loadtest.publish``)
- ``DRILL_AMQP_SIZE``: message body size, bytes (512)
- ``DRILL_AMQP_TIMEOUT``: seconds to wait for a confirm before the outcome is unknown (5)
"""

from __future__ import annotations

import os


def env_str(name: str, default: str = "") -> str:
    """The variable's value, ``default`` when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_float(name: str, default: float) -> float:
    """The variable as a float; a malformed value is an error naming the variable (never ignored)."""
    raw = env_str(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


def env_int(name: str, default: int) -> int:
    """The variable as an int; a malformed value is an error naming the variable."""
    raw = env_str(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
