"""``python -m system.notifications``: one replica of the notifications service.

Configuration: ``DRILL_SERVICE``/``DRILL_REPLICA``/``DRILL_RUN_DIR``/``DRILL_PLATFORM_SECRETS`` (the
supervisor and ``drill system up`` set them; the broker user is always ``notifications``),
``DRILL_NOTIFICATIONS_*`` (:mod:`.settings`) and ``DRILL_MSG_*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from system.logs import configure_logging, get_logger
from system.platform.runtime import ServiceRuntime
from system.platform.settings import ServiceSettings, messaging_settings_for
from system.platform.topology import NOTIFICATIONS, NOTIFICATIONS_STATES, platform_topology

from . import store
from .ack_first import consume_ack_first
from .handlers import decode_state_changed, handle_state_changed
from .providers import Provider, provider_for
from .sender import Sender
from .settings import NotificationsSettings

log = get_logger(__name__)


async def run(service: ServiceSettings, settings: NotificationsSettings) -> None:
    """Build the runtime (consumer + sender sweep) and run it until SIGTERM/SIGINT."""
    msg = messaging_settings_for(service)
    runtime = ServiceRuntime(service, msg, platform_topology(), schema=store.SCHEMA)
    provider: Provider = provider_for(
        settings.notify_url, settings.provider_path(service.run_dir), settings.http_timeout_s
    )
    owner = f"{service.service}.{service.replica}:{os.getpid()}"
    runtime.every(settings.send_period_s, Sender(settings, provider, owner))
    broken: asyncio.Task[None] | None = None
    if settings.test_ack_before_commit:
        broken = asyncio.create_task(consume_ack_first(msg, service.database, NOTIFICATIONS_STATES))
    else:
        runtime.consume(NOTIFICATIONS_STATES, handle_state_changed, decode_state_changed)
    log.info(
        "notifications starting",
        extra={
            "provider": "http" if settings.notify_url else "recording",
            "notify_url": settings.notify_url,
            "test_ack_before_commit": settings.test_ack_before_commit,
        },
    )
    try:
        await runtime.run()
    finally:
        if broken is not None:
            broken.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await broken
        await provider.close()


def main() -> None:
    """Read the settings from the environment and run one replica."""
    service = ServiceSettings(service=NOTIFICATIONS)
    settings = NotificationsSettings()
    configure_logging(service.log_level)
    asyncio.run(run(service, settings))


if __name__ == "__main__":
    main()
