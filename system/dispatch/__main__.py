"""``python -m system.dispatch``: one dispatch replica (configuration: ``DRILL_*`` and ``DRILL_DISPATCH_*``)."""

from __future__ import annotations

import asyncio

from system.logs import configure_logging, get_logger
from system.platform.runtime import ServiceRuntime
from system.platform.settings import ServiceSettings, messaging_settings_for
from system.platform.topology import (
    DISPATCH,
    DISPATCH_ANSWERS,
    DISPATCH_ORDERS,
    DISPATCH_QUOTES,
    platform_topology,
)

from .handlers import Dispatch, decode_answer, decode_order, decode_quoted
from .settings import DispatchSettings
from .store import SCHEMA

log = get_logger("system.dispatch")


def main() -> None:
    """Build the runtime, register the handlers and the timeout sweep, run until SIGTERM."""
    service = ServiceSettings(service=DISPATCH)
    settings = DispatchSettings()
    configure_logging(service.log_level)
    dispatch = Dispatch(settings)
    runtime = ServiceRuntime(service, messaging_settings_for(service), platform_topology(), schema=SCHEMA)
    runtime.consume(DISPATCH_QUOTES, dispatch.on_quoted, decode_quoted)
    runtime.consume(DISPATCH_ORDERS, dispatch.on_order, decode_order)
    runtime.consume(DISPATCH_ANSWERS, dispatch.on_answer, decode_answer)
    runtime.every(settings.sweep_every_s, dispatch.sweep)
    log.info("dispatch configured", extra=settings.model_dump(mode="json"))
    asyncio.run(runtime.run())


if __name__ == "__main__":
    main()
