"""The courier model: pure quotes, bookings, outages, capacity, driver timelines, dialects."""

from __future__ import annotations

import itertools

import pytest

from simulator.config import OutageConfig, default_couriers
from simulator.couriers import DIALECTS, CourierModel, Quote, QuoteDeclined, QuoteRequest
from simulator.geo import Point, haversine_km

A, B, FAR = Point(51.52, -0.10), Point(51.50, -0.12), Point(51.42, -0.20)
COURIERS = {c.name: c for c in default_couriers()}


def req(ref: str = "s1-0000001", dropoff: Point = B, size: str = "S") -> QuoteRequest:
    return QuoteRequest(ref, A, dropoff, size, 900, 0.0)  # type: ignore[arg-type]


def test_quote_is_pure_and_priced_by_distance_and_surge() -> None:
    m = CourierModel(7, COURIERS["zoomly"])
    near, far = m.quote(req(), 0.0, 10.0), m.quote(req(dropoff=FAR), 0.0, 10.0)
    assert isinstance(near, Quote) and isinstance(far, Quote)
    assert near == m.quote(req(), 0.0, 10.0) == CourierModel(7, COURIERS["zoomly"]).quote(req(), 0.0, 10.0)
    assert far.price_minor > near.price_minor and near.price_minor % 5 == 0
    assert near.vehicle == "bike" and near.currency == "GBP" and near.expires_in_s == 900.0
    assert near.pickup_eta_s < near.dropoff_eta_s
    peak = m.quote(req(), 0.0, 12.0)
    assert isinstance(peak, Quote) and peak.price_minor > near.price_minor and peak.surge == 1.2


def test_vehicle_must_fit_the_parcel() -> None:
    assert isinstance(CourierModel(1, COURIERS["pedalo"]).quote(req(size="XL"), 0.0, 9.0), QuoteDeclined)
    van = CourierModel(1, COURIERS["vanguard"]).quote(req(size="XL"), 0.0, 9.0)
    assert isinstance(van, Quote) and van.vehicle == "van"


def test_outage_means_silence() -> None:
    m = CourierModel(1, COURIERS["dashly"], [OutageConfig(courier="dashly", at=10.0, duration=5.0)])
    assert m.quote(req(), 9.9, 9.0) is not None
    assert m.quote(req(), 10.0, 9.0) is None and m.book("s1-0000001", 14.9, 0) is None
    assert m.quote(req(), 15.0, 9.0) is not None


def test_capacity_and_acceptance() -> None:
    m = CourierModel(1, COURIERS["dashly"])
    full = m.book("s1-0000001", 0.0, active_jobs=COURIERS["dashly"].capacity)
    assert full is not None and not full.accepted and full.reason == "no_capacity"
    answers = [m.book(f"s1-{i:07d}", 0.0, 0) for i in range(2000)]
    share = sum(1 for a in answers if a is not None and a.accepted) / len(answers)
    assert share == pytest.approx(COURIERS["dashly"].acceptance, abs=0.03)


@pytest.mark.parametrize("name", ["zoomly", "dashly", "pedalo"])
def test_timeline_moves_at_vehicle_speed_and_ends(name: str) -> None:
    m = CourierModel(3, COURIERS[name])
    outcomes = set()
    for i in range(300):
        tl = m.timeline(f"s3-{i:07d}", A, B, "bike", "d1", ping_every_s=20.0)
        times = [e.sim_after_s for e in tl.events]
        assert times == sorted(times)
        statuses = [e.canonical for e in tl.events if e.kind == "status"]
        assert statuses[:3] == ["courier_assigned", "picked_up", "in_transit"]
        assert statuses[-1] in {"delivered", "failed", "returned"} and statuses[-1] in tl.outcome
        assert all(
            e.status == DIALECTS[COURIERS[name].dialect][e.canonical] for e in tl.events if e.canonical
        )
        pings = [e for e in tl.events if e.kind == "ping"]
        assert pings
        # Consecutive pings on one leg are 20 s apart and within bike speed (≤ 18 km/h × 1.2 + detour).
        for p, q in itertools.pairwise(pings):
            dt = q.sim_after_s - p.sim_after_s
            if dt == pytest.approx(20.0):
                assert haversine_km(Point(p.lat, p.lon), Point(q.lat, q.lon)) / (dt / 3600) < 18.0 * 1.2
        outcomes.add(tl.outcome)
    assert "delivered" in outcomes and outcomes & {"failed", "returned"}
    assert m.timeline("s3-0000001", A, B, "bike", "d1") == m.timeline("s3-0000001", A, B, "bike", "d1")


def test_dialects_name_every_canonical_state_distinctly() -> None:
    for dialect, names in DIALECTS.items():
        assert len(set(names.values())) == len(names), dialect


def test_quote_and_job_serials_keep_the_first_id_and_suffix_later_ones() -> None:
    m = CourierModel(7, COURIERS["zoomly"])
    first, fresh = m.quote(req(), 0.0, 10.0), m.quote(req(), 30.0, 10.0, serial=2)
    assert isinstance(first, Quote) and isinstance(fresh, Quote)
    assert first.quote_id == m.quote_id("s1-0000001") and first.quote_id.count("-") == 2  # q-zoomly-<12>
    assert fresh.quote_id == first.quote_id + "-2" and fresh.price_minor == first.price_minor
    assert fresh != first and fresh == m.quote(req(), 30.0, 10.0, serial=2)  # its own stream, replayable
    sure = COURIERS["zoomly"].model_copy(update={"acceptance": 1.0})
    a = CourierModel(7, sure).book("s1-0000001", 0.0, 0, attempt=1)
    b = CourierModel(7, sure).book("s1-0000001", 0.0, 0, attempt=2, job_serial=2)
    assert a is not None and b is not None and a.job_id == m.job_id("s1-0000001")
    assert b.job_id == f"{a.job_id}-2"
