"""The courier gateway: one adapter per courier dialect turns couriers' status and location messages
(docs/intake-api.md §3.5-3.6) into the platform's canonical lifecycle messages for tracking."""
