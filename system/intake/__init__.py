"""Order intake: the HTTP service retailers and their providers send orders to.

* :mod:`.app` — the aiohttp API (REST, Shopify-style and ePOS-style webhooks, read-back, cancel, probes).
* :mod:`.store` — the shared intake SQLite DB: deliveries, history, idempotency, webhook events, outbox.
* :mod:`.messages` — the ``orders`` exchange messages written to the outbox.
* :mod:`.relay` — the relay process publishing the outbox with confirms.
* :mod:`.retailers` — the retailers file (API keys by hash, webhook secrets), reloaded on change.
* :mod:`.settings` — configuration (``DRILL_INTAKE_*``).

Run: ``python -m system.intake`` (one HTTP replica) and ``python -m system.intake relay``.
"""
