"""The drill runner: ``./drill run SCENARIO`` and ``./drill demo``.

One drill = a broker cluster, the platform's services, traffic (the simulator, optionally Locust), a chaos
experiment in parallel, then drain, heal, audit and the reports, all in one run directory
``.drill/runs/<UTC timestamp>-<name>/``.

- :mod:`harness.drill.scenario` — the drill scenario file (TOML) and its validation, errors with lines.
- :mod:`harness.drill.plan` — the dry-run plan (phases, chaos timeline, durations); pure.
- :mod:`harness.drill.services` — the run's own services spec (free ports, replicas, env); pure.
- :mod:`harness.drill.run` — :class:`~harness.drill.run.DrillRun`, one run's shared state and records.
- :mod:`harness.drill.phases` — the phases, one module each (cluster, provision, links, system, traffic,
  stop traffic, heal, drain, audit, stop), each testable with fakes for the rig.
- :mod:`harness.drill.observers` — the samplers (``rig.resources``, ``rig.queues``) and the live view
  while the traffic runs; :mod:`harness.drill.live` — what the live view shows.
- :mod:`harness.drill.checks` — the drill's own checks (completed, traffic, chaos, heal).
- :mod:`harness.drill.runner` — :class:`~harness.drill.runner.DrillRunner`, which sequences the phases.

Nothing heavy is imported here: ``./drill --help`` must stay fast.
"""
