"""JSON with orjson when it is installed, the standard library otherwise.

orjson parses a ledger line about 7x faster than :mod:`json`; the 1M-message budget of the audit
(≤ 10 s) depends on it, but the audit must stay correct without it, so every caller goes through here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

_orjson: ModuleType | None
try:
    import orjson

    _orjson = orjson
except ImportError:  # pragma: no cover - exercised only where orjson is absent
    _orjson = None

HAVE_ORJSON = _orjson is not None

#: ``loads(bytes | str) -> Any``; raises ``ValueError`` (both libraries' errors subclass it) on bad input.
loads: Callable[[bytes | str], Any] = _orjson.loads if _orjson is not None else json.loads


def dumps_line(obj: Any) -> bytes:
    """One compact JSON object and a newline, as bytes (the ledger / JSON-lines shape)."""
    if _orjson is not None:
        line: bytes = _orjson.dumps(obj, option=_orjson.OPT_APPEND_NEWLINE)
        return line
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()  # pragma: no cover


def dumps_pretty(obj: Any) -> str:
    """Indented, key-order-preserving JSON for human-read files (report.json)."""
    # The standard library is used on purpose: report.json is small, and its output is stable
    # whichever library is installed (orjson indents with 2 spaces only and differs on floats).
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


#: What :func:`json_lines` yields for a line that is not JSON (a cut last line, a foreign write).
MALFORMED: Any = object()


def json_lines(path: Path) -> Iterator[Any]:
    """Each non-blank line of a JSON-lines file, parsed; :data:`MALFORMED` for a line that is not JSON.

    The caller checks the shape and counts what it rejects, so every reader of a run's JSON-lines
    evidence (journal, samples) treats damage the same way: skipped and counted, never fatal.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "x.jsonl"
    ...     _ = p.write_bytes(b'{"a": 1}\\n\\n{"cut')
    ...     [v if v is not MALFORMED else "malformed" for v in json_lines(p)]
    [{'a': 1}, 'malformed']
    """
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                yield loads(line)
            except ValueError:
                yield MALFORMED
