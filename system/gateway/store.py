"""The gateway's SQL: it keeps nothing of its own (stateless apart from the runtime's inbox and outbox
in ``gateway.db``), so its schema is empty and its one write is an outbox row."""

from __future__ import annotations

from system.messaging import outbox

SCHEMA = ""


add_once = outbox.add_once
