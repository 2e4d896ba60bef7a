"""chaos: breaks things on purpose, precisely and reproducibly, and always puts them back.

- :mod:`chaos.faults` — the catalogue (broker nodes, broker resources, partitions).
- :mod:`chaos.injector` — :class:`FaultInjector` applies faults with a journal, always undoes them,
  heals after a crash; :mod:`chaos.journal` is that journal.
- :mod:`chaos.toxiproxy` — a Toxiproxy-compatible proxy for client ↔ broker link faults.

Nothing is imported here, so ``python -m chaos.toxiproxy`` starts without loading the rig.
"""
