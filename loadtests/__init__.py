"""Locust load for the drill: the intake API as retailers and integrations use it, and raw broker load.

Locustfiles (run them with ``locust -f FILE``; each is a plain Locust file)::

    loadtests/intake.py            RestRetailer, ShopifyWebhooks, EposWebhooks (FastHttpUser) against
                                   docs/intake-api.md; DRILL_SHAPE=steady|step|doubles|spike picks a shape
    loadtests/intake_<shape>.py    the same users with one shape built in (steady, step, doubles, spike)
    loadtests/amqp_user.py         AmqpPublisher: confirmed, mandatory, persistent publishes to a quorum
                                   queue through aio-pika on an asyncio loop in a real thread

Library modules (no Locust import, safe in any process)::

    loadtests.runner     run_locust(): Locust headless in subprocesses, CSV/JSON stats parsed, PIDs owned
    loadtests.profiles   the shapes' logic (users and spawn rate over run time)
    loadtests.ledger     the JSON-lines ledger of every intake request and its outcome
    loadtests.world      retailers (retailers.json or seed) and unique, current orders
    loadtests.settings   the DRILL_* environment variables (table there)

Importing Locust (``loadtests.intake``, ``loadtests.shapes``, ``loadtests.amqp_user``) monkey-patches
the whole process with gevent. Never import them into the platform's asyncio services or the drill's
orchestrator: start Locust as a process (:func:`loadtests.runner.run_locust` does).

Standalone::

    locust -f loadtests/intake.py --host http://127.0.0.1:8080 --headless -u 50 -r 10 -t 60s \\
        --csv out/stats --html out/report.html
    DRILL_SHAPE=doubles DRILL_SHAPE_USERS=20 DRILL_SHAPE_DURATION=120 DRILL_SHAPE_STEP_AT=60 \\
        locust -f loadtests/intake.py --host http://127.0.0.1:8080 --headless
    DRILL_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ locust -f loadtests/amqp_user.py --headless -u 20 -r 20 -t 30s

Without ``DRILL_RETAILERS`` the retailers and their secrets are generated from ``DRILL_SEED`` exactly as
``drill simulate`` does, so a platform started with ``drill simulate``'s ``retailers.json`` of the same
seed accepts the load. With ``DRILL_RUN_DIR`` every request goes to ``<run>/locust/ledger-<pid>.jsonl``
(merged into ``ledger.jsonl`` by ``run_locust``) in the simulator ledger's record kinds, so the audit's
ledger reader (``reports.readers.ledger.read_ledger``) reads it.

From a drill::

    from loadtests.runner import run_locust
    result = run_locust("loadtests/intake.py", "http://127.0.0.1:8080", run_dir, users=50, spawn_rate=10,
                        duration=120, shape="doubles", workers=2)
    result.requests, result.failures, result.rps, result.p95_ms, result.max_users

Distributed mode (when one machine's load generator is the bottleneck — a Locust process uses one CPU
core; FastHttpUser makes ~10k req/s per core against a trivial server, far less against a real one):
one *master* runs no users, it dispatches users to *workers* and aggregates their stats every 3 s;
each worker is a separate process (on this or another machine) running its share of users.
``run_locust(..., workers=N)`` starts the master bound to a free loopback port
(``--master --master-bind-host 127.0.0.1 --master-bind-port P --expect-workers N``) and N workers
(``--worker --master-host 127.0.0.1 --master-port P``), all with the same locustfile and DRILL_*
environment; only the master writes the CSV/HTML/JSON files, each worker writes its own ledger part.
Across machines, start the workers by hand on the other hosts with ``--master-host <master address>``
(the locustfile and this repository must be there too, and DRILL_RUN_DIR must be a local directory on
each host — collect the ``ledger-*.jsonl`` parts afterwards). Rules of thumb: one worker per CPU core;
the master needs little CPU; ``--expect-workers`` makes the run wait until all workers have connected.
"""
