"""Quoting: asks every eligible courier for a quote (scatter-gather with a deadline) and hands the ranked
suitable quotes to dispatch (``DeliveryQuoted``), or reports that no courier can take the order.

* :mod:`.decide` — the pure part: whom to ask, the quote request, when a round is due, the decision.
* :mod:`.orders` — intake's order messages as the downstream services read them.
* :mod:`.store` — the quote rounds and answers in ``<run dir>/quoting.db``.
* :mod:`.handlers` — decoders, the handlers of ``quoting.orders`` / ``quoting.answers``, the deadline sweep.
* :mod:`.settings` — configuration (``DRILL_QUOTING_*``).

Run: ``python -m system.quoting``.
"""
