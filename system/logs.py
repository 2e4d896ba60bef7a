"""Structured JSON-lines logging shared by every service of the platform.

One JSON object per line with ``ts``, ``level``, ``logger``, ``msg`` and, where one exists,
``message_id``. Any ``extra={...}`` field given to a logging call is copied into the object, so
call sites say ``log.info("published", extra={"message_id": mid, "exchange": ex})``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

# Attributes every LogRecord carries; anything else on a record came from ``extra=`` and is logged.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime", "taskName"}
)


class JsonLineFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # One line per record even with a traceback: the traceback becomes a string field.
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure_logging(level: str | int = "INFO", stream: IO[str] | None = None) -> None:
    """Route the root logger to JSON lines on ``stream`` (stderr by default), replacing handlers.

    aiormq logs full tracebacks on every connection reset; under chaos that drowns the useful lines,
    so its level is raised to ERROR unless the caller asked for DEBUG.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if logging.getLevelName(level) != "DEBUG" and level != logging.DEBUG:
        logging.getLogger("aiormq").setLevel(logging.CRITICAL)
        logging.getLogger("aio_pika").setLevel(logging.ERROR)


def get_logger(name: str) -> logging.Logger:
    """The logger for a module: ``get_logger(__name__)``."""
    return logging.getLogger(name)
