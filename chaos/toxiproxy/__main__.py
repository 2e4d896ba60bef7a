"""``python -m chaos.toxiproxy --host 127.0.0.1 --port 8474 [--config proxies.json]``.

Prints ``{"url": "http://host:port", ...}`` on stdout once the API listens (``--port 0`` picks a free
port), logs JSON lines on stderr, and stops on SIGINT/SIGTERM, closing every proxied connection.
"""

from __future__ import annotations

import argparse
import asyncio

from chaos.toxiproxy._logs import configure_logging
from chaos.toxiproxy.server import DEFAULT_HOST, DEFAULT_PORT, run_server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.toxiproxy", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST, help="API host (loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="API port (0: any free port)")
    parser.add_argument("--config", help="JSON file: a list of proxies to create at start (as -config)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    asyncio.run(run_server(args.host, args.port, args.config))


if __name__ == "__main__":
    main()
