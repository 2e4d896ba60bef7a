"""Dispatch: books the quoted options in order, one courier at a time, until one accepts; cancels courier
jobs the platform no longer wants (a cancelled order, an acceptance that came after we moved on).

* :mod:`.decide` — the pure part: a job's state and what each event does to it.
* :mod:`.messages` — booking and cancel requests (docs/intake-api.md §3.3, §3.4), lifecycle events.
* :mod:`.store` — jobs, attempts and cancel requests in ``<run dir>/dispatch.db``.
* :mod:`.handlers` — decoders, the handlers of ``dispatch.quotes`` / ``.orders`` / ``.answers``, the
  booking-deadline sweep (a silent courier is asked again, then the next option is booked).
* :mod:`.settings` — configuration (``DRILL_DISPATCH_*``).

Run: ``python -m system.dispatch``.
"""
