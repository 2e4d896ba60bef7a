"""Typer commands of the proxy, for ``harness/cli.py`` to mount.

``app`` has ``serve`` and ``bench``; ``bench_command`` can also be mounted on its own, e.g.
``bench_app.command("proxy")(bench_command)`` gives ``drill bench proxy``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Literal

import typer

# The server (aiohttp) and the bench are imported inside the commands: mounting this app in the
# drill CLI must not slow down its --help.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8474

app = typer.Typer(help="A Toxiproxy-compatible TCP fault proxy (loopback only).", no_args_is_help=True)


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="API host (loopback only).")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="API port (0: any free port).")] = DEFAULT_PORT,
    config: Annotated[str | None, typer.Option(help="JSON list of proxies to create at start.")] = None,
    log_level: Annotated[str, typer.Option(help="Log level of the JSON-line logs on stderr.")] = "INFO",
) -> None:
    """Serve the Toxiproxy REST API until SIGINT/SIGTERM."""
    from chaos.toxiproxy._logs import configure_logging
    from chaos.toxiproxy.server import run_server

    configure_logging(log_level)
    asyncio.run(run_server(host, port, config))


@app.command("bench")
def bench_command(
    rounds: Annotated[int, typer.Option(help="Ping-pong round trips per path.")] = 5000,
    message_size: Annotated[int, typer.Option(help="Bytes per ping-pong message.")] = 64,
    stream_mb: Annotated[int, typer.Option(help="MB streamed per throughput run.")] = 200,
    repeats: Annotated[int, typer.Option(help="Interleaved runs per path.")] = 3,
    mode: Annotated[str, typer.Option(help="Where the proxy runs: subprocess | thread.")] = "subprocess",
    api_url: Annotated[str | None, typer.Option(help="Use this running Toxiproxy API.")] = None,
    amqp_url: Annotated[str | None, typer.Option(help="Also measure AMQP publish msgs/s.")] = None,
    amqp_messages: Annotated[int, typer.Option(help="Messages per AMQP run.")] = 5000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON first.")] = False,
) -> None:
    """Proxy pass-through overhead vs a direct connection; last line: the throughput ratio."""
    if mode not in ("subprocess", "thread"):
        raise typer.BadParameter("mode must be subprocess or thread")
    from chaos.toxiproxy.bench import bench_proxy

    chosen: Literal["subprocess", "thread"] = "thread" if mode == "thread" else "subprocess"
    result = bench_proxy(
        rounds=rounds,
        message_size=message_size,
        stream_mb=stream_mb,
        repeats=repeats,
        mode=chosen,
        api_url=api_url,
        amqp_url=amqp_url,
        amqp_messages=amqp_messages,
    )
    if as_json:
        typer.echo(json.dumps(result.to_json()))
    for line in result.lines():
        typer.echo(line)
