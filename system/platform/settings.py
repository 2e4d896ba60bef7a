"""Per-service settings and broker credentials (environment prefix ``DRILL_``).

The supervisor gives every replica ``DRILL_SERVICE``, ``DRILL_REPLICA`` and ``DRILL_RUN_DIR``. Broker
credentials come from the platform secrets file that provisioning writes (``drill system up``;
:mod:`rig.provision`), ``DRILL_PLATFORM_SECRETS`` or ``<run dir>/secrets/platform.json``, mode 0600,
outside the repository)::

    {"vhost": "drill", "nodes": ["127.0.20.1:6101", "127.0.20.2:6102", "127.0.20.3:6103"],
     "users": {"quoting": {"username": "drill-quoting", "password": "…"}, …}}

Each service connects as its own user, whose permissions cover only its own queues and the exchanges it
uses. Without a secrets file the messaging core's ``DRILL_MSG_AMQP_URLS`` (or the drill-wide
``DRILL_AMQP_URLS``) is used as is — tests with the admin user do that.

Example:
    >>> s = ServiceSettings(service="quoting", run_dir=Path("/tmp/run"))
    >>> s.database
    PosixPath('/tmp/run/quoting.db')
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

import rundir
from system.messaging.settings import MessagingSettings


class SecretsError(Exception):
    """The platform secrets file is missing, unreadable or has no user for this service."""


class ServiceSettings(BaseSettings):
    """What every platform service process needs to know about itself."""

    model_config = SettingsConfigDict(env_prefix="DRILL_", extra="ignore", populate_by_name=True)

    service: str = Field(description="The service name (also its RabbitMQ user's key in the secrets file).")
    replica: int = Field(default=0, ge=0, description="Replica index given by the supervisor.")
    run_dir: Path = Field(default=Path("."), description="Where the run keeps its files.")
    db_path: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("DRILL_DB_PATH", "db_path"),
        description="The service's SQLite file, shared by its replicas (default <run dir>/<service>.db).",
    )
    platform_secrets: Path | None = Field(
        default=None,
        description="Secrets file with the broker users (default <run dir>/secrets/platform.json).",
    )
    ready_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("DRILL_READY_FILE", "ready_file"),
        description="The ready marker (the supervisor names one per replica; default <run dir>/ready/...).",
    )
    log_level: str = Field(default="INFO", description="Root log level.")
    relay_lease_s: float = Field(
        default=3.0, gt=0, description="Outbox relay lease: a dead relay's replica is replaced within this."
    )
    shutdown_grace_s: float = Field(default=5.0, gt=0, description="SIGTERM: time for work in flight.")

    @property
    def database(self) -> Path:
        """The service's SQLite file."""
        return self.db_path if self.db_path is not None else self.run_dir / f"{self.service}.db"

    @property
    def secrets_path(self) -> Path:
        """Where the platform secrets file is looked for."""
        if self.platform_secrets is not None:
            return self.platform_secrets
        return self.run_dir / rundir.PLATFORM_SECRETS

    @property
    def ready_marker(self) -> Path:
        """Touched once every consumer of this replica consumes; removed at exit."""
        if self.ready_file is not None:
            return self.ready_file
        return self.run_dir / rundir.ready_marker(self.service, self.replica)


def amqp_urls_from_secrets(doc: dict[str, Any], service: str) -> list[str]:
    """The service's URLs, one per node, from a parsed secrets file.

    Example:
        >>> amqp_urls_from_secrets({"vhost": "drill", "nodes": ["127.0.0.1:5672"],
        ...     "users": {"quoting": {"username": "drill-quoting", "password": "p/w"}}}, "quoting")
        ['amqp://drill-quoting:p%2Fw@127.0.0.1:5672/drill']
    """
    try:
        user = doc["users"][service]
        vhost = quote(str(doc["vhost"]), safe="")
        return [
            f"amqp://{quote(user['username'], safe='')}:{quote(user['password'], safe='')}@{node}/{vhost}"
            for node in doc["nodes"]
        ]
    except (KeyError, TypeError) as exc:
        raise SecretsError(
            f"the platform secrets file has no usable entry for {service!r}: {exc!r}"
        ) from None


def messaging_settings_for(settings: ServiceSettings, **overrides: Any) -> MessagingSettings:
    """The messaging core's settings with this service's own broker URLs."""
    path = settings.secrets_path
    if path.exists():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SecretsError(f"cannot read the platform secrets file {path}: {exc}") from None
        return MessagingSettings(amqp_urls=amqp_urls_from_secrets(doc, settings.service), **overrides)
    if "DRILL_MSG_AMQP_URLS" not in os.environ and os.environ.get("DRILL_AMQP_URLS"):
        return MessagingSettings(amqp_urls=os.environ["DRILL_AMQP_URLS"], **overrides)  # type: ignore[arg-type]
    return MessagingSettings(**overrides)
