"""``python -m system.quoting``: one quoting replica (configuration: ``DRILL_*`` and ``DRILL_QUOTING_*``)."""

from __future__ import annotations

import asyncio

from system.domain.marketplace import load_marketplace
from system.logs import configure_logging, get_logger
from system.platform.runtime import ServiceRuntime
from system.platform.settings import ServiceSettings, messaging_settings_for
from system.platform.topology import QUOTING, QUOTING_ANSWERS, QUOTING_ORDERS, platform_topology

from .handlers import Quoting, RegistryRules, decode_answer, decode_quoting_input
from .settings import QuotingSettings
from .store import SCHEMA

log = get_logger("system.quoting")


def main() -> None:
    """Build the runtime, register the handlers and the deadline sweep, run until SIGTERM."""
    service = ServiceSettings(service=QUOTING)
    settings = QuotingSettings()
    configure_logging(service.log_level)
    market = load_marketplace()
    rules = RegistryRules(settings.retailers_path(service.run_dir), settings.retailers_reload_s)
    quoting = Quoting(settings, market, rules)
    runtime = ServiceRuntime(
        service, messaging_settings_for(service), platform_topology(marketplace=market), schema=SCHEMA
    )
    runtime.consume(QUOTING_ORDERS, quoting.on_order, decode_quoting_input)
    runtime.consume(QUOTING_ANSWERS, quoting.on_answer, decode_answer)
    runtime.every(settings.sweep_every_s, quoting.sweep)
    log.info("quoting configured", extra=settings.model_dump(mode="json"))
    asyncio.run(runtime.run())


if __name__ == "__main__":
    main()
