"""The phases of a drill, one module each, in the order the runner calls them.

Each phase is a function of the run's shared state (:class:`harness.drill.run.DrillRun`); what it
needs of the rig (a cluster class, the provisioner, the supervisor's handle, the drain, the link
proxies) is a keyword argument whose default is the real thing, so a unit test passes fakes and needs
no broker.

- :mod:`~harness.drill.phases.prepare` — the run directory, its log, scenario, objectives and plan
- :mod:`~harness.drill.phases.cluster` — start, reuse or connect to the cluster; the fault injector
- :mod:`~harness.drill.phases.provision` — the vhost, one broker user per service, the topology
- :mod:`~harness.drill.phases.links` — a Toxiproxy proxy per node (only for link faults)
- :mod:`~harness.drill.phases.system` — the services under the supervisor, until every replica is ready
- :mod:`~harness.drill.phases.traffic` — the simulator, Locust and the chaos experiment
- :mod:`~harness.drill.phases.stop_traffic` — stop the traffic and the chaos (held faults undone)
- :mod:`~harness.drill.phases.heal` — undo the journal's open faults, sweep the rig
- :mod:`~harness.drill.phases.drain` — queues and outboxes empty; then the simulator's receiver goes
- :mod:`~harness.drill.phases.audit` — the audit, the drill's own checks, the reports
- :mod:`~harness.drill.phases.stop` — the system, the link proxies and the cluster this run started
"""
