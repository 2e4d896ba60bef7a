"""Loss audit and reports: did the platform lose, invent or double anything it accepted?

The audit follows Jepsen's *total-queue* checker, generalised from "a queue" to any **flow**: a path
with an entry where ids are offered (an HTTP request sent, a message published) and an exit where they
are seen (a message dequeued, an order reaching a terminal state). Every source — the simulator's
ledger, generic JSON-lines op records, the platform's SQLite tables — is normalised into one tiny
model, :class:`reports.ops.Op` ``(kind, id, flow, t, key, attrs)``, with these kinds::

    attempt   an id was offered (publish / HTTP request sent)
    ack       the system acknowledged it (publish confirmed / HTTP 202)
    fail      definitely rejected (final nack / HTTP 4xx): not expected to arrive
    unknown   outcome unknown (timeout, refused connection, closed channel, nack-and-retry)
    observe   the id was seen at the end of the flow (dequeued / terminal state)
    effect    a side effect with an effect key (booking for X; SMS for (X, state, recipient, channel))
    expect    an effect key that is owed exactly once (a state change that must be notified)
    parked    the id was parked, with ``attrs["reason"]``
    inflight  the id was explicitly still in flight when the run was cut

Each attempted id of a flow gets exactly one **fate**; the tree below is the whole decision, top to
bottom, and :func:`reports.taxonomy.classify` implements it with set algebra (order-independent: fates,
counts and verdict depend only on the multiset of ops, never on their interleaving; the one exception
is cosmetic — an id parked several times is reported with its latest reason)::

    attempted id  (any attempt, ack, fail or unknown: an outcome implies an attempt)
    ├── acknowledged (≥1 ack — an ack beats every fail/unknown of a retry)
    │   ├── observed ............................................. ok
    │   └── not observed
    │       ├── parked ........................................... parked_acked       (explained)
    │       ├── in flight ........................................ inflight_acked     (explained)
    │       └── otherwise ........................................ LOST               ✗ invalid
    └── not acknowledged
        ├── observed
        │   ├── a definite fail, and no unknown / unanswered try . FAILED_BUT_OBSERVED ✗ a bug
        │   └── otherwise (unknown or unanswered try) ............ recovered          (fine)
        └── not observed
            ├── parked ........................................... parked_unacked
            ├── in flight ........................................ inflight_unacked
            ├── a definite fail, and no unknown / unanswered try . failed             (correct)
            └── otherwise ........................................ indeterminate      (allowed)

    observed but never attempted ................................. UNEXPECTED         ✗ invalid
    observed more than once ...................................... duplicated         (reported only)
    effect key seen more than once ............................... DUPLICATED EFFECT  ✗ invalid
    parked / in flight but never attempted nor observed .......... orphans            (reported only)

An "unanswered try" is an attempt with no outcome of its own (more attempts than outcomes for the id):
like Jepsen's ``:info`` operation it may or may not have happened.

Identities that always hold (property-tested in ``tests/unit/reports``)::

    acknowledged = ok + lost + parked_acked + inflight_acked
    attempts     = acknowledged + recovered + failed_but_observed
                   + parked_unacked + inflight_unacked + failed + indeterminate
    observed     = ok + recovered + failed_but_observed + unexpected        (distinct ids)
    parked       = parked_acked + parked_unacked        in_flight = inflight_acked + inflight_unacked

A flow is **valid** iff ``lost``, ``unexpected`` and ``duplicated_effects`` are empty (Jepsen's rule
plus effects). ``failed_but_observed`` does not change validity — Jepsen has no such class — but it is
its own failing check, because an id we were told was rejected must never arrive. Flows are audited one
by one and, through :class:`reports.audit.Chain`, end to end (attempts of the entry flow against
observations of the exit flow, parked / in-flight explanations from any flow). Business invariants
(:mod:`reports.checks`) are separate named checks; each check is one JUnit test case.

Availability, latency and recovery are measured beside the audit, from the same single read of the
ledger: ``timeline`` (request classes — 4xx bad input is not unavailability — and order milestones),
``faults`` (chaos-journal fault windows, queue samples, backlog drain), ``performance`` (request- and
time-based availability, nearest-rank percentiles, per-fault figures, failover, series), ``slo``
(objectives from ``RUN/slo.toml``; each is a named check ``slo[...]``, so the exit code is 0 only when
nothing was lost, invented or doubled **and** every objective held), ``story`` (the verdict in plain
words), ``plots`` (matplotlib, inline PNG), ``compare`` (two report.json side by side), ``synthetic``
(a consistent run directory for tests and demos).

Layout: ``ops`` (model + collector) · ``taxonomy`` (the classification) · ``checks`` (named checks,
exit code) · ``audit`` (pipeline over a run directory; report.json schema) · ``readers/`` (jsonl,
simulator ledger, sqlite) · ``writers/`` (report.json, junit.xml, summary.md, report.html with
``templates/report.html.j2``) · ``timeline`` · ``faults`` · ``performance`` · ``slo`` · ``story`` ·
``plots`` · ``compare`` · ``synthetic`` · ``bench`` · ``cli``.
"""
