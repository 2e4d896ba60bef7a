"""``python -m system.intake`` serves HTTP; ``python -m system.intake relay`` runs the outbox relay."""

from __future__ import annotations

import argparse
import asyncio

from system.logs import configure_logging

from .relay import run_relay
from .server import serve
from .settings import IntakeSettings, messaging_settings


def main(argv: list[str] | None = None) -> None:
    """Parse the command and run it; configuration comes from the environment (``DRILL_INTAKE_*``)."""
    parser = argparse.ArgumentParser(prog="python -m system.intake")
    parser.add_argument("command", nargs="?", choices=("serve", "relay"), default="serve")
    args = parser.parse_args(argv)
    settings = IntakeSettings()
    configure_logging(settings.log_level)
    if args.command == "relay":
        asyncio.run(run_relay(settings, messaging_settings()))
    else:
        asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
