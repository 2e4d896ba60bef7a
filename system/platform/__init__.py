"""What every platform service shares: the topology (:mod:`.topology`), the messages services send each
other (:mod:`.contracts`), per-service settings and credentials (:mod:`.settings`) and the process
runtime that runs a service's consumers, outbox relay and timers (:mod:`.runtime`)."""
