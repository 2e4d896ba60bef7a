"""The tracking service: owns each delivery's canonical state machine (one shard per delivery, in
order), records every rejected transition, and announces accepted state changes on ``tracking``."""
