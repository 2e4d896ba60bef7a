"""The delivery domain: pure, typed rules of the platform (no broker, no HTTP, no database).

Modules:

* :mod:`system.domain.common` — shared value types (money, positions, vehicles, parcel sizes, road km).
* :mod:`system.domain.lifecycle` — the canonical delivery state machine.
* :mod:`system.domain.dialects` — courier status dialects (Uber-, DoorDash-, Stuart-style) → canonical.
* :mod:`system.domain.intake` — the three intake channels' bodies, signatures, idempotency, normalisation.
* :mod:`system.domain.retailers` — the retailers file (``retailers.json``) and each retailer's rules.
* :mod:`system.domain.marketplace` — the courier registry (package data ``default.toml``) and eligibility.
* :mod:`system.domain.quoting` — quotes, the retailer's selection rules, ranking and retries.
* :mod:`system.domain.notifications` — which notifications a state change owes, with dedup keys.

Services (intake, quoting, dispatch, gateway, tracking, notifications) call these functions; the only
I/O here is reading the marketplace's package data file.
"""
