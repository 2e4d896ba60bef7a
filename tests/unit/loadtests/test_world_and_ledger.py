"""Orders for the load (unique references, windows from now, valid signatures) and the ledger records."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from loadtests.ledger import RequestLedger, outcome_of
from loadtests.world import (
    OrderFactory,
    RetailersError,
    for_channel,
    load_retailers,
    load_retailers_file,
)
from simulator.channels.base import hmac_b64
from simulator.channels.shopify import ShopifyEncoder
from simulator.world import build_retailers, write_retailers_file


@pytest.fixture
def retailers_path(tmp_path: Path) -> Path:
    from loadtests.world import default_scenario

    path = tmp_path / "retailers.json"
    write_retailers_file(path, 5, build_retailers(5, default_scenario()))
    return path


def test_retailers_file_round_trip(retailers_path: Path) -> None:
    from loadtests.world import default_scenario

    loaded = load_retailers_file(retailers_path)
    original = build_retailers(5, default_scenario())
    assert [r.id for r in loaded] == [r.id for r in original]
    assert [r.credentials for r in loaded] == [r.credentials for r in original]
    assert [r.stores for r in loaded] == [r.stores for r in original]


def test_bad_retailers_file(tmp_path: Path) -> None:
    bad = tmp_path / "r.json"
    bad.write_text('{"version": 1, "retailers": [{"id": "r01"}]}')
    with pytest.raises(RetailersError, match=r"r\.json"):
        load_retailers_file(bad)


def test_generated_retailers_written_to_run_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DRILL_RETAILERS", raising=False)
    monkeypatch.setenv("DRILL_SEED", "9")
    monkeypatch.setenv("DRILL_RUN_DIR", str(tmp_path))
    retailers = load_retailers()
    written = load_retailers_file(tmp_path / "locust" / "retailers.json")
    assert [r.credentials for r in written] == [r.credentials for r in retailers]


def test_factory_orders_unique_and_current(retailers_path: Path) -> None:
    retailers = load_retailers_file(retailers_path)
    shop = for_channel(retailers, "shopify")
    a = OrderFactory(shop, "shopify", seed=1005, tag="aa")
    b = OrderFactory(shop, "shopify", seed=1005, tag="bb")
    orders = [a.next()[0] for _ in range(50)] + [b.next()[0] for _ in range(50)]
    assert len({o.ref for o in orders}) == 100
    assert len({o.seq for o in orders}) == 100  # Shopify ids
    assert all(o.ref.startswith("s1005-L") for o in orders)
    now = time.time()
    for o in orders[:5]:
        # Windows start from now (the prep time ahead), not from the generator's arrival times.
        start = a.epoch + o.pickup_window[0]
        assert now - 5 <= start <= now + 3 * 3600
        assert o.pickup_window[0] < o.dropoff_window[1]


def test_factory_orders_encode_with_valid_hmac(retailers_path: Path) -> None:
    retailers = load_retailers_file(retailers_path)
    f = OrderFactory(for_channel(retailers, "shopify"), "shopify", seed=1005, tag="t")
    order, retailer = f.next()
    req = ShopifyEncoder(f.clock).encode_order(order, retailer)[0]
    assert req.headers["X-Shopify-Hmac-Sha256"] == hmac_b64(retailer.credentials.webhook_secret, req.body)
    assert json.loads(req.body)["name"] == order.ref


def test_outcome_of() -> None:
    assert [outcome_of(s) for s in (200, 202, 401, 409, 422, 429, 500, 503, None, 0)] == [
        "accepted", "accepted", "rejected", "rejected", "rejected", "rejected",
        "unknown", "unknown", "unknown", "unknown",
    ]  # fmt: skip


def test_ledger_records_and_flush() -> None:
    now = [100.0]
    buf = io.StringIO()
    led = RequestLedger(buf, clock=lambda: now[0])
    flushed: list[bool] = []
    buf.flush = lambda: flushed.append(True)  # type: ignore[method-assign]
    rid = led.next_req()
    led.write("order_sent", "s1-L-r1", req=rid, channel="rest")
    assert not flushed  # buffered
    now[0] += 1.5
    led.write("order_answer", "s1-L-r1", req=rid, outcome="accepted", delivery_id="dlv_1")
    assert flushed  # at most a second late
    a, b = (json.loads(line) for line in buf.getvalue().splitlines())
    assert a == {"t": 100.0, "kind": "order_sent", "order_ref": "s1-L-r1", "source": "locust", "req": rid,
                 "channel": "rest"}  # fmt: skip
    assert b["outcome"] == "accepted" and b["req"] == rid and led.records == 2


def test_ledger_readable_by_the_audit(tmp_path: Path) -> None:
    from reports.ops import Collector
    from reports.readers.ledger import read_ledger

    path = tmp_path / "ledger.jsonl"
    with path.open("w") as fh:
        led = RequestLedger(fh)
        for i, outcome in enumerate(("accepted", "rejected", "unknown")):
            led.write("order_sent", f"s1-L-r{i}", req=str(i), attempt=1, channel="rest")
            led.write("order_answer", f"s1-L-r{i}", req=str(i), outcome=outcome, http_status=202)
    collector = Collector()
    stats = read_ledger(path, collector)
    assert stats.ops == 6 and not stats.errors


def test_a_503_with_retry_after_is_shed() -> None:
    assert [outcome_of(503, 2.0), outcome_of(500, 2.0), outcome_of(202, 2.0), outcome_of(None, 2.0)] == [
        "shed",
        "unknown",
        "accepted",
        "unknown",
    ]


def test_the_locust_retailers_shed_wait_in_its_own_process() -> None:
    """Locust monkey-patches the stdlib with gevent: imported in a child process, never in pytest's."""
    import subprocess
    import sys

    code = (
        "import doctest, loadtests.intake as m;"
        "r = doctest.run_docstring_examples(m.shed_wait, vars(m), verbose=False);"
        "assert m.shed_wait(2.0, 0.0) == 2.0 and m.shed_wait(2.0, 1.0) == 2.5 and m.shed_wait(1e9, 0) == 30.0;"
        "assert m._shed_reason(b'{\"reason\": \"queue_depth\"}') == 'queue_depth';"
        "assert m._shed_reason(b'garbage') == 'unspecified'; print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
