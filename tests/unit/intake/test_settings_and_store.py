"""Configuration sources and the store's guard against a transaction left open."""

from __future__ import annotations

from pathlib import Path

import pytest

from system.intake.settings import IntakeSettings, messaging_settings
from system.intake.store import IntakeStore

from .conftest import World


def test_settings_fall_back_to_the_supervisor_and_drill_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("DRILL_INTAKE_RUN_DIR", "DRILL_INTAKE_RETAILERS", "DRILL_INTAKE_PORT", "DRILL_RETAILERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DRILL_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("DRILL_HTTP_PORT", "8181")
    s = IntakeSettings()
    assert s.database == tmp_path / "intake.db" and s.retailers_path == tmp_path / "retailers.json"
    assert s.port == 8181
    monkeypatch.setenv("DRILL_RETAILERS", "/secrets/retailers.json")
    monkeypatch.setenv("DRILL_INTAKE_PORT", "9000")
    monkeypatch.setenv("DRILL_INTAKE_MAX_BODY_BYTES", "4096")
    s = IntakeSettings()
    assert s.retailers_path == Path("/secrets/retailers.json") and s.port == 9000 and s.max_body_bytes == 4096


def test_amqp_urls_from_the_drill_variable_unless_the_messaging_one_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DRILL_MSG_AMQP_URLS", raising=False)
    monkeypatch.setenv("DRILL_AMQP_URLS", "amqp://a:1/,amqp://b:2/")
    assert messaging_settings().amqp_urls == ["amqp://a:1/", "amqp://b:2/"]
    monkeypatch.setenv("DRILL_MSG_AMQP_URLS", "amqp://c:3/")
    assert messaging_settings().amqp_urls == ["amqp://c:3/"]


async def test_a_transaction_left_open_is_rolled_back_not_fatal(tmp_path: Path, world: World) -> None:
    store = IntakeStore(tmp_path / "intake.db", synchronous="NORMAL")
    await store.open()
    try:
        # What a task cancelled during its BEGIN leaves behind.
        await store._writer.execute("BEGIN IMMEDIATE")
        assert await store.writable()
    finally:
        await store.close()


async def test_group_commit_a_failing_request_rolls_back_alone(tmp_path: Path, world: World) -> None:
    import asyncio

    from system.domain.intake import idempotency_fingerprint, normalise_rest, parse_rest
    from system.domain.retailers import parse_retailers
    from system.intake.store import Answer

    store = IntakeStore(tmp_path / "intake.db", synchronous="NORMAL")
    await store.open()
    book = parse_retailers(world.path.read_bytes())

    async def broken(db: object) -> Answer:
        await store._writer.execute("INSERT INTO webhook_events VALUES ('x', 'r', 'e', NULL, 'o', 0)")
        raise RuntimeError("boom")

    async def submit(n: int) -> Answer:
        (req,) = world.requests(world.order("rest", n))
        retailer = book.by_api_key(req.headers["Authorization"].removeprefix("Bearer "))
        assert retailer is not None
        delivery = normalise_rest(parse_rest(req.body), retailer)
        return await store.submit_rest(
            delivery, req.headers["Idempotency-Key"], idempotency_fingerprint(req.body)
        )

    try:
        results = await asyncio.gather(
            *(submit(n) for n in range(10)),
            store._run(broken),
            *(submit(n) for n in range(10, 20)),
            return_exceptions=True,
        )
        assert [r.status for r in results if isinstance(r, Answer)] == [202] * 20
        assert [str(r) for r in results if isinstance(r, BaseException)] == ["boom"]
        cursor = await store._writer.execute(
            "SELECT (SELECT COUNT(*) FROM deliveries), (SELECT COUNT(*) FROM webhook_events)"
        )
        assert await cursor.fetchone() == (20, 0)
    finally:
        await store.close()
