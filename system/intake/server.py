"""One intake HTTP replica: ``python -m system.intake`` (see :mod:`system.intake.app`)."""

from __future__ import annotations

import asyncio
import os
import signal

from aiohttp import web

from system.logs import get_logger
from system.platform.retailers import RetailerRegistry
from system.shutdown import stop_with_deadline

from .admission import AdmissionGate
from .app import build_app
from .settings import IntakeSettings
from .store import IntakeStore

log = get_logger(__name__)


async def serve(settings: IntakeSettings) -> None:
    """Serve until SIGTERM/SIGINT, then finish the requests in flight and close the DB."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # runner.cleanup() waits up to shutdown_timeout (10 s) for requests in flight.
        loop.add_signal_handler(sig, stop_with_deadline(stop.set, 25.0))
    gate = AdmissionGate(settings.admission_limits)
    store = IntakeStore(settings.database, synchronous=settings.sqlite_synchronous, admission=gate)
    await store.open()
    gating: asyncio.Task[None] | None = None
    if settings.admission_enabled:
        gating = asyncio.create_task(gate.run(store.lag, settings.admission_sample_s, stop))
    retailers = RetailerRegistry(settings.retailers_path, settings.retailers_reload_s)
    retailers.loaded  # noqa: B018 - load now, so a missing file is logged at start, not at the first order
    app = build_app(settings, store, retailers)
    # access_log=None: one line per request would drown the useful ones; accepted orders are logged
    # with their delivery and message ids by the store, refusals by the error middleware.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
    await site.start()
    log.info(
        "intake listening",
        extra={
            "host": settings.host,
            "port": settings.port,
            "db": str(settings.database),
            "replica": os.environ.get("DRILL_REPLICA"),
            "admission": gate.snapshot(),
        },
    )
    marker = settings.ready_file  # only under a supervisor: the relay owns the default name
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
    await stop.wait()
    log.info("intake stopping")
    if marker is not None:
        # Not ready any more: a rolling restart waits for the successor's marker, not this one.
        marker.unlink(missing_ok=True)
    await runner.cleanup()
    if gating is not None:
        await asyncio.gather(gating, return_exceptions=True)
    await store.close()
