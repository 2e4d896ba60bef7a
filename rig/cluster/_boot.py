"""Why a RabbitMQ node's VM died while booting, read from what the node wrote, and the retry policy.

RabbitMQ 3.10 can crash during start-up when its peers change under it: kill a node, then stop its
peers while it boots, and its VM may exit with ``{badmap,undefined}`` in
``rabbit_feature_flags:enable_dependencies`` (raised from ``do_sync_feature_flags_with_node`` against a
peer; a feature-flag sync race fixed upstream in later lines). The node boots fine once its peers are
stable, so the rig starts it again with backoff (:class:`BootRetry` records each try) and logs this
module's one-line reason, so a drill can tell a broker that needed two boots from a broken one.

Example::

    >>> text = '''
    ... BOOT FAILED
    ... ===========
    ... Exception during startup:
    ...
    ... error:{badmap,undefined}
    ...
    ...     rabbit_feature_flags:enable_dependencies/2, line 1416
    ...     rabbit_feature_flags:do_sync_feature_flags_with_node/2, line 2202
    ... '''
    >>> boot_crash_reason(text)
    '{badmap,undefined} in rabbit_feature_flags:enable_dependencies/2 (via rabbit_feature_flags:do_sync_feature_flags_with_node/2)'
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from pathlib import Path

#: The first pause before a node whose VM died during boot is started again; it doubles each time.
RETRY_FIRST_S = 1.0
#: The longest pause between two boots of one node.
RETRY_MAX_S = 8.0
#: A booting node still waiting for its peers' tables this long after every peer serves is stalled.
STALL_S = 15.0
#: What a node logs when it starts waiting for its peers' Mnesia tables during boot, and when it got them.
WAITING_FOR_TABLES = "Waiting for Mnesia tables"
GOT_TABLES = "Successfully synced tables"
#: A reason longer than this is cut (a line of a log, not an Erlang term dump).
REASON_MAX = 220

# "2026-01-01 10:00:00.123456+00:00 [error] <0.223.0> " — the node log's prefix on every line.
_PREFIX = re.compile(r"^\S+ \S+ \[\w+\] <[\d.]+> ?")
_FRAME = re.compile(r"^\s*([a-z][\w]*:[\w']+/\d+)")
_SYNC_FRAME = re.compile(r"\b([a-z]\w*:\w*sync\w*/\d+)")


@dataclass(frozen=True)
class BootRetry:
    """One death of a node's VM during boot, and the restart it caused."""

    node: int
    attempt: int  # the boot that died: 1 for the first
    reason: str
    pause_s: float  # how long the rig waited before the next boot
    at: float  # time.time() when the death was seen
    #: not a crash: the rig killed a boot stuck waiting for its peers' tables, or a fault stopped it
    stalled: bool = False


def _clean(text: str) -> list[str]:
    return [_PREFIX.sub("", line).rstrip() for line in text.splitlines()]


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 1] + "…"


def boot_crash_reason(text: str) -> str | None:
    """The broker's reason for dying during boot, in one line, or None when ``text`` shows none.

    Looked for, in order (the forms of RabbitMQ 3.10's ``rabbit_prelaunch_errors``): the term after
    ``Exception during startup:`` with the first stack frame (and the feature-flag sync frame it came
    through, when there is one); ``Error during startup: TERM`` with the first ``Error ...:`` detail
    logged before it (a configuration error names the setting); the term after ``Starting broker...`` (a
    start cut short); ``Kernel pid terminated``; ``init terminating in do_boot``; the last ``error`` line.
    """
    lines = _clean(text)
    for i, line in enumerate(lines):
        if line.strip() != "Exception during startup:":
            continue
        rest = [x for x in lines[i + 1 :] if x.strip()]
        if not rest:
            break
        reason = rest[0].strip().removeprefix("error:").removeprefix("exit:").removeprefix("throw:")
        frames = [m.group(1) for x in rest[1:40] if (m := _FRAME.match(x))]
        if frames:
            reason += f" in {frames[0]}"
            via = [f for f in frames[1:] if _SYNC_FRAME.search(f)]
            if via:
                reason += f" (via {via[0]})"
        return _short(reason)
    for i, line in enumerate(lines):
        if line.strip().startswith("Error during startup:"):
            reason = line.strip().removeprefix("Error during startup:").strip()
            detail = _first_error_detail(lines[:i])
            return _short(f"{reason}: {detail}" if detail else reason)
    for line in lines:
        # What the server script prints when the rabbit application's start is cut short (RabbitMQ 4.0:
        # a boot stopped by a SIGTERM logs nothing else): ``Starting broker...{exit,{shutdown,...}},...``.
        _, sep, term = line.partition("Starting broker...{")
        if sep:
            return _short("{" + term)
    for marker in ("Kernel pid terminated", "init terminating in do_boot"):
        for line in lines:
            if marker in line:
                return _short(line.strip())
    for line in reversed(lines):
        low = line.strip().lower()
        if low.startswith(("error:", "error ", "boot failed")) or "[error]" in line:
            return _short(line.strip())
    return None


def _first_error_detail(lines: list[str]) -> str | None:
    """``Error preparing configuration in phase X:`` and the line after it, when the boot logged one."""
    for i, line in enumerate(lines):
        text = line.strip()
        if text.startswith("Error ") and not text.startswith("Error during startup"):
            after = next((x.strip() for x in lines[i + 1 :] if x.strip()), "")
            return f"{text} {after}" if text.endswith(":") and after else text
    return None


def waiting_for_tables_since(text: str) -> float | None:
    """When (seconds since the epoch) the node began the table wait it is still in, from its log's
    own timestamps; None when it is not waiting (no wait, or the last one was answered).

    >>> waiting_for_tables_since(
    ...     "2026-12-07 01:53:55.980635+00:00 [info] <0.223.0> Waiting for Mnesia tables for 30000 ms, 9 retries left"
    ... )
    1796608435.980635
    """
    wait_at = text.rfind(WAITING_FOR_TABLES)
    if wait_at < 0 or text.rfind(GOT_TABLES) > wait_at:
        return None
    line = text[text.rfind("\n", 0, wait_at) + 1 : wait_at]
    try:
        return _dt.datetime.fromisoformat(" ".join(line.split()[:2])).timestamp()
    except ValueError:
        return None


def read_since(path: Path, offset: int) -> str:
    """What ``path`` gained after ``offset`` bytes ('' when it is missing or was truncated)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
