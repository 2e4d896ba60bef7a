"""The notifications service: tells customers and drivers about each accepted state change, once.

``python -m system.notifications`` consumes ``notifications.state-changes`` (tracking's StateChanged
messages). In the consumer's transaction each owed :class:`~system.domain.notifications.Notification`
becomes a ``pending`` row keyed by its dedup key (:mod:`.store`); a sweep on every replica claims due
rows (a lease per row, so two replicas never send the same row at once), posts them to the provider
(:mod:`.providers`: the HTTP provider of docs/intake-api.md §4, or a recording stand-in) and marks them
``sent``, ``failed`` (a permanent refusal, with the reason) or due again later (capped backoff).

A crash between the provider's answer and ``sent`` re-sends the *same* ``notification_id`` once the
claim expires: a re-send the provider can recognise, never a second notification.

Modules: :mod:`.settings` (``DRILL_NOTIFICATIONS_*``), :mod:`.decide` (pure: what a StateChanged
owes), :mod:`.store` (SQL), :mod:`.providers`, :mod:`.sender` (the sweep), :mod:`.handlers` (decoder and
handler), :mod:`.ack_first` (TEST ONLY: a deliberately broken consumer for the drill to catch).
"""
