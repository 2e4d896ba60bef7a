"""``python -m system.tracking``: one replica of the tracking service (every shard queue; single active
consumer makes one replica active per shard, the others hot standbys)."""

from __future__ import annotations

import asyncio

from system.logs import configure_logging
from system.platform.runtime import ServiceRuntime
from system.platform.settings import ServiceSettings, messaging_settings_for
from system.platform.topology import TRACKING_SERVICE, platform_topology, tracking_shard

from .handlers import decode, handle
from .settings import TrackingSettings
from .store import SCHEMA


def main() -> None:
    """Build the runtime from the environment and run until SIGTERM."""
    service = ServiceSettings(service=TRACKING_SERVICE)
    settings = TrackingSettings()
    configure_logging(service.log_level)
    topology = platform_topology(shards=settings.shards)
    runtime = ServiceRuntime(service, messaging_settings_for(service), topology, schema=SCHEMA)
    for index in range(settings.shards):
        runtime.consume(tracking_shard(index), handle, decode)
    asyncio.run(runtime.run())


if __name__ == "__main__":
    main()
