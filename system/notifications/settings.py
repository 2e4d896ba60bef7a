"""The one typed place for the notifications service's configuration (environment prefix
``DRILL_NOTIFICATIONS_``).

Which replica this is, where the run directory is and the broker credentials come from
:class:`~system.platform.settings.ServiceSettings` (``DRILL_SERVICE``, ``DRILL_REPLICA``,
``DRILL_RUN_DIR``, ``DRILL_PLATFORM_SECRETS``); ``DRILL_MSG_*`` tunes the messaging core.

Example:
    >>> s = NotificationsSettings(notify_url="http://127.0.0.1:9100/")
    >>> s.notify_url, s.claim_s > s.http_timeout_s
    ('http://127.0.0.1:9100', True)
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotificationsSettings(BaseSettings):
    """Settings of one notifications replica; every field is ``DRILL_NOTIFICATIONS_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="DRILL_NOTIFICATIONS_", extra="ignore", use_attribute_docstrings=True
    )

    notify_url: str | None = None
    """The provider's base URL (``POST {notify_url}/v1/notifications``); unset: the recording provider."""

    provider_db: Path | None = None
    """The recording provider's own SQLite file (default ``<run dir>/notify-provider.db``)."""

    send_period_s: float = Field(default=0.2, gt=0)
    """How often each replica looks for due notifications to send."""

    batch_size: int = Field(default=32, ge=1, le=1000)
    """Notifications one replica claims and sends (concurrently) per round."""

    http_timeout_s: float = Field(default=5.0, gt=0)
    """Deadline of one POST to the provider; past it the outcome is unknown: retried later."""

    claim_s: float = Field(default=10.0, gt=0)
    """How long a claim keeps other replicas off a row. After a crash, rows in flight are sent again
    (same notification_id) once it expires. Must exceed ``http_timeout_s``."""

    backoff_initial_s: float = Field(default=0.5, gt=0)
    """First wait after a retryable failure (429, 5xx, timeout, connection refused)."""

    backoff_max_s: float = Field(default=30.0, gt=0)
    """Cap of the exponential backoff (also of a provider's Retry-After)."""

    test_ack_before_commit: bool = False
    """TEST ONLY: a deliberately broken service for the drill to catch. Consumes with a plain consumer
    that acks each message on receipt and only then writes its notifications (no inbox), so a kill
    between the ack and the commit loses them."""

    @field_validator("notify_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"notify_url must be an http(s) URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _claim_outlives_a_send(self) -> NotificationsSettings:
        # A claim that expires while its POST is still waiting would let the next round send the row
        # again: a needless re-send on every slow answer.
        if self.claim_s <= self.http_timeout_s:
            raise ValueError(
                f"claim_s ({self.claim_s}) must be greater than http_timeout_s ({self.http_timeout_s})"
            )
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self

    def provider_path(self, run_dir: Path) -> Path:
        """Where the recording provider keeps its sends."""
        return self.provider_db if self.provider_db is not None else run_dir / "notify-provider.db"
