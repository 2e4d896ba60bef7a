"""Logs, settings, parked-message parsing, conflict messages, the CLI's topology command."""

from __future__ import annotations

import io
import json
import logging

import pytest
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec
from pamqp.header import ContentHeader
from typer.testing import CliRunner

from system.logs import JsonLineFormatter, configure_logging
from system.messaging.cli import app
from system.messaging.declare import _INEQUIVALENT, TopologyConflict
from system.messaging.envelope import ORIGINAL_EXCHANGE, ORIGINAL_ROUTING_KEY, PARK_REASON, OutgoingMessage
from system.messaging.parking import parse_parked
from system.messaging.settings import MessagingSettings
from system.platform.topology import platform_topology


def test_json_lines_carry_the_message_id() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (
        root.handlers[:],
        root.level,
        logging.getLogger("aiormq").level,
        logging.getLogger("aio_pika").level,
    )
    try:
        configure_logging("INFO", stream)
        logging.getLogger("system.messaging.test").warning(
            "republishing", extra={"message_id": "m-1", "n": 2}
        )
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("aiormq").setLevel(saved[2])
        logging.getLogger("aio_pika").setLevel(saved[3])
    line = stream.getvalue().strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["msg"] == "republishing" and entry["message_id"] == "m-1" and entry["n"] == 2
    assert entry["level"] == "warning" and entry["logger"] == "system.messaging.test" and "ts" in entry


def test_exceptions_stay_on_one_line() -> None:
    try:
        raise ValueError("x")
    except ValueError:
        record = logging.LogRecord(
            "l", logging.ERROR, "f", 1, "failed", (), exc_info=__import__("sys").exc_info()
        )
    out = JsonLineFormatter().format(record)
    assert "\n" not in out and "ValueError" in json.loads(out)["exc"]


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRILL_MSG_AMQP_URLS", "amqp://a:1/, amqp://b:2/")
    monkeypatch.setenv("DRILL_MSG_RETRY_DELAYS_MS", "[100, 200]")
    monkeypatch.setenv("DRILL_MSG_CONFIRM_WINDOW", "32")
    s = MessagingSettings()
    assert s.amqp_urls == ["amqp://a:1/", "amqp://b:2/"]
    assert s.retry_delays_ms == [100, 200] and s.confirm_window == 32
    monkeypatch.setenv("DRILL_MSG_CONFIRM_WINDOW", "0")
    with pytest.raises(ValueError):
        MessagingSettings()


def raw(headers: dict[str, object], routing_key: str = "q") -> DeliveredMessage:
    props = spec.Basic.Properties(message_id="m1", headers=headers, content_type="application/json")
    return DeliveredMessage(
        delivery=spec.Basic.GetOk(delivery_tag=1, exchange="drill.parked", routing_key=routing_key),
        header=ContentHeader(properties=props, body_size=2),
        body=b"{}",
        channel=None,  # type: ignore[arg-type]
    )


def test_parked_by_the_consumer_replays_to_the_original_destination() -> None:
    m = parse_parked(
        raw(
            {
                PARK_REASON: "handler failed 4 times",
                ORIGINAL_EXCHANGE: "orders",
                ORIGINAL_ROUTING_KEY: "order.created",
                "x-drill-attempt": 4,
                "trace": "t1",
            }
        ),
        "q",
    )
    assert m.reason == "handler failed 4 times"
    replay = m.replay_message()
    assert (replay.exchange, replay.routing_key, replay.message_id) == ("orders", "order.created", "m1")
    assert replay.headers == {"trace": "t1"}  # retry bookkeeping removed, business headers kept


def test_parked_by_the_broker_delivery_limit_uses_x_death() -> None:
    death = {
        "reason": "delivery_limit",
        "exchange": "orders",
        "routing-keys": ["order.created"],
        "queue": "q",
    }
    m = parse_parked(raw({"x-death": [death], "x-first-death-reason": "delivery_limit"}), "q")
    assert "delivery_limit" in m.reason
    assert (m.original_exchange, m.original_routing_key) == ("orders", "order.created")
    assert "x-death" not in m.replay_message().headers


def test_conflict_names_the_queue_and_the_argument() -> None:
    text = (
        "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'orders.work' in vhost '/': "
        "received the value '5' of type 'signedint' but current is the value '20' of type 'long'"
    )
    match = _INEQUIVALENT.search(text)
    assert match and match.group("arg") == "x-delivery-limit" and match.group("name") == "orders.work"
    err = TopologyConflict("queue", "orders.work", "x-delivery-limit", text)
    assert "orders.work" in str(err) and "x-delivery-limit" in str(err)


def test_cli_topology_prints_the_count_of_queues_last() -> None:
    result = CliRunner().invoke(app, ["topology"])
    assert result.exit_code == 0, result.output
    topo = platform_topology()
    assert result.output.strip().splitlines()[-1].startswith(f"{len(topo.declared_queues())} queues")


def test_outgoing_json_message_keeps_its_id() -> None:
    m = OutgoingMessage.json("ex", "k", {"a": 1}, message_id="fixed")
    assert m.message_id == "fixed" and json.loads(m.body) == {"a": 1}
    assert OutgoingMessage.json("ex", "k", {}).message_id != OutgoingMessage.json("ex", "k", {}).message_id
