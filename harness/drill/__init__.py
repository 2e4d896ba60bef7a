"""The drill runner: ``./drill run SCENARIO`` and ``./drill demo``.

One drill = a broker cluster, the platform's services, traffic (the simulator, optionally Locust), a chaos
experiment in parallel, then drain, heal, audit and the reports, all in one run directory
``.drill/runs/<UTC timestamp>-<name>/``.

- :mod:`harness.drill.scenario` — the drill scenario file (TOML) and its validation, errors with lines.
- :mod:`harness.drill.plan` — the dry-run plan (phases, chaos timeline, durations); pure.
- :mod:`harness.drill.services` — the run's own services spec (free ports, replicas, env); pure.
- :mod:`harness.drill.live` — what the live view shows (ledger progress, queue figures, faults).
- :mod:`rig.resources` — CPU and memory per role once a second (``resources.jsonl``).
- :mod:`harness.drill.runner` — :class:`~harness.drill.runner.DrillRunner`, the phases themselves.

Nothing heavy is imported here: ``./drill --help`` must stay fast.
"""
