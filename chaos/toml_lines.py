r"""Where a validation error sits in a TOML file the user wrote (a drill scenario, a chaos experiment).

pydantic names a bad field by its path (``("method", 1, "at")``); the user edits lines. :func:`line_of`
finds the line: tables (``[a.b]``), arrays of tables (``[[a]]``, indexed), keys and keys inside inline
tables.

Example:
    >>> text = 'title = "x"\n[[method]]\nfault = "a"\n[[method]]\nfault = "b"\nat = -1\n'
    >>> line_of(text, ("method", 1, "at")), line_of(text, ("title",)), line_of(text, ("method", 5))
    (6, 1, None)
"""

from __future__ import annotations

import re
from typing import Any

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")


def line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort 1-based line of a field path in a TOML file: tables (``[a.b]``), arrays of tables
    (``[[a]]``, indexed), keys and keys inside inline tables. None when nothing matches."""
    lines = text.splitlines()
    headers: list[tuple[int, str, bool]] = []
    for i, ln in enumerate(lines):
        m = _HEADER.match(ln)
        if m:
            headers.append((i, re.sub(r"[\s\"']", "", m.group(2)), m.group(1) == "[["))

    def end_of(start: int) -> int:
        return next((h[0] for h in headers if h[0] > start), len(lines))

    start, end = 0, (headers[0][0] if headers else len(lines))
    found_header = False
    path: list[str] = []
    i = 0
    parts = list(loc)
    while i < len(parts) and isinstance(parts[i], str):
        dotted = ".".join([*path, parts[i]])
        matches = [h for h in headers if h[1] == dotted]
        if not matches:
            break
        path.append(parts[i])
        i += 1
        chosen = matches[0]
        if chosen[2] and i < len(parts) and isinstance(parts[i], int):
            if parts[i] >= len(matches):
                return None
            chosen = matches[parts[i]]
            i += 1
        start, end, found_header = chosen[0], end_of(chosen[0]), True
    keys = [str(p) for p in parts[i:] if isinstance(p, str)]
    # The innermost key first (a key of an inline table), then the outer ones.
    for key in reversed(keys):
        pattern = re.compile(rf"(^\s*|[{{,]\s*)[\"']?{re.escape(key)}[\"']?\s*=")
        for n in range(start, end):
            if pattern.search(lines[n]):
                return n + 1
    if found_header:
        return start + 1
    return None
