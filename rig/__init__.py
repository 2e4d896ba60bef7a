"""The broker rig and process control: what the drill, the chaos injector and the tests stand on.

``rig.cluster`` starts, observes, breaks and mends real RabbitMQ clusters; ``rig.procs`` signals and
watches processes by PID; ``rig.supervisor`` runs the platform's services as supervised replicas;
``rig.provision`` gives the platform its vhost, topology and users; ``rig.drain`` waits for the queues
and outboxes to empty; ``rig.resources`` and ``rig.queues`` sample a running drill; ``rig.crashed``
finds and stops what a drill whose runner died left running; ``rig.ports`` finds free ports.

The rig imports the platform (``system``) for its topology and the run directory's layout
(``rundir``), never the chaos injector, the load, the reports or the drill above it.
"""
