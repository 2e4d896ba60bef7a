"""``drill bench platform``'s rule for a sustained step: zero loss is not enough when the orders behind
intake stop getting a courier."""

from __future__ import annotations

from harness.drill.bench import Step


def step(rate: float, booked: int, baseline: float | None, **over: object) -> Step:
    fields: dict[str, object] = dict(
        rate=rate, orders=400, accepted=400, rejected=0, unknown=0, lost=0, valid=True, finished=True,
        published_per_s=100.0, booked=booked, baseline_share=baseline,
    )  # fmt: skip
    fields.update(over)
    return Step(**fields)  # type: ignore[arg-type]


def test_a_step_that_keeps_booking_is_sustained() -> None:
    first = step(10, 340, None)
    assert first.booked_share == 0.85 and first.sustained
    assert step(20, 300, first.booked_share).sustained  # 75% >= 0.8 x 85%


def test_a_step_whose_orders_end_without_a_courier_is_not_sustained_although_nothing_was_lost() -> None:
    s = step(40, 40, 0.85)  # 10% got a courier: quotes past the deadline, orders ended "no courier"
    assert s.valid and s.lost == 0 and not s.kept_booking and not s.sustained


def test_loss_unknowns_or_unfinished_deliveries_are_not_sustained() -> None:
    assert not step(10, 340, None, valid=False, lost=1).sustained
    assert not step(10, 340, None, unknown=3).sustained
    assert not step(10, 340, None, finished=False).sustained
