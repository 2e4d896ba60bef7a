"""``python -m system.gateway``: one replica of the courier gateway (queues ``gateway.<dialect>``)."""

from __future__ import annotations

import asyncio

from system.logs import configure_logging
from system.platform.runtime import ServiceRuntime
from system.platform.settings import ServiceSettings, messaging_settings_for
from system.platform.topology import GATEWAY, gateway_queue, platform_topology

from .handlers import decoder_for, handle
from .settings import GatewaySettings
from .store import SCHEMA


def main() -> None:
    """Build the runtime from the environment and run until SIGTERM."""
    service = ServiceSettings(service=GATEWAY)
    settings = GatewaySettings()
    configure_logging(service.log_level)
    runtime = ServiceRuntime(service, messaging_settings_for(service), platform_topology(), schema=SCHEMA)
    for dialect in settings.dialects:
        runtime.consume(gateway_queue(dialect), handle, decoder_for(dialect))
    asyncio.run(runtime.run())


if __name__ == "__main__":
    main()
