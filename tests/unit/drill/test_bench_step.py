"""``drill bench platform``: a step is sustained when the platform served what it admitted — the audit's
served/abandoned rule, not a booked-share heuristic — and its costs are summed from the resource samples."""

from __future__ import annotations

import pytest

from harness.drill.bench import BenchResult, Step, cpu_seconds, group, per_order, report_lines


def step(rate: float = 10, **over: object) -> Step:
    fields: dict[str, object] = dict(
        rate=rate, orders=400, accepted=400, rejected=0, unknown=0, lost=0, valid=True, finished=True,
        published_per_s=100.0, booked=340, abandoned=0, unfinished=0, served_share=0.97, admitted=398,
        traffic_s=40.0, messages=5600, span_s=70.0,
    )  # fmt: skip
    fields.update(over)
    return Step(**fields)  # type: ignore[arg-type]


def test_a_step_with_nothing_lost_or_abandoned_is_sustained_at_the_offered_rate() -> None:
    s = step(10)
    assert s.sustained and s.sustained_rate == 10 and s.why_not() == ""
    assert s.messages_per_order == 14.0


def test_orders_ending_without_a_courier_by_the_worlds_refusal_do_not_break_sustained() -> None:
    # 10% got a courier, but every other order was refused by every courier asked: the world's no,
    # not abandoned by the platform (reports.service): the old booked-share heuristic called this "not kept".
    assert step(40, booked=40).sustained


def test_an_abandoned_or_unfinished_order_is_not_sustained_although_nothing_was_lost() -> None:
    s = step(40, abandoned=3)
    assert s.valid and s.lost == 0 and not s.sustained and "3 abandoned" in s.why_not()
    assert not step(40, unfinished=2).sustained
    assert s.sustained_rate == 0


def test_abandoned_not_judged_is_not_sustained() -> None:
    assert not step(abandoned=None).sustained


def test_loss_unknowns_or_unfinished_deliveries_are_not_sustained() -> None:
    assert not step(valid=False, lost=1).sustained
    assert not step(unknown=3).sustained
    assert not step(finished=False).sustained
    assert not step(rejected=1).sustained


def test_a_step_that_shed_is_sustained_at_its_admitted_rate() -> None:
    s = step(40, shed_orders=120, admitted=1000, traffic_s=40.0)  # 25/s admitted of 40/s offered
    assert s.shed and s.sustained and s.sustained_rate == 25.0


def test_a_shed_order_given_up_by_its_retailer_is_not_sustained() -> None:
    assert not step(40, shed_orders=120, given_up=4).sustained


def test_cpu_seconds_weigh_each_record_by_its_overlap_with_the_window() -> None:
    records = [
        {"t": 101.0, "dt": 1.0, "roles": {"broker.1": {"cpu": 50.0}, "service.quoting": {"cpu": 20.0}}},
        {"t": 102.0, "dt": 1.0, "roles": {"broker.1": {"cpu": 100.0}}},
        {"t": 103.0, "dt": 1.0, "roles": {"broker.1": {"cpu": 100.0}}},
    ]
    used = cpu_seconds(records, 100.5, 102.0)
    assert used["broker.1"] == pytest.approx(0.25 + 1.0)
    assert used["service.quoting"] == pytest.approx(0.1)


def test_per_order_costs_are_gross_and_net_of_the_idle_cores_over_the_span() -> None:
    s = step(accepted=100, span_s=10.0, cpu_s={"broker.1": 5.0, "service.quoting": 2.0, "simulator": 1.0})
    costs = per_order(s, {"broker.1": 0.2, "service.quoting": 0.1})
    assert costs["broker.1"] == {"gross": 0.05, "net": pytest.approx(0.03)}
    assert costs["simulator"]["net"] == costs["simulator"]["gross"] == 0.01
    assert costs["platform"]["gross"] == pytest.approx(0.07)
    assert group({"broker.1": 0.1, "broker.2": 0.1, "service.x": 0.05, "drill": 1.0})[
        "platform"
    ] == pytest.approx(0.25)


def test_the_report_names_the_sustained_rate_the_idle_cost_and_ends_with_the_ratio() -> None:
    result = BenchResult(
        1000.0,
        [step(10, cpu_s={"broker.1": 4.0}), step(20, abandoned=5)],
        idle_cores={"broker.1": 0.1, "service.intake": 0.05},
        idle_s=15.0,
    )
    lines = report_lines(result)
    assert any(line.startswith("sustained: 10 orders/s") for line in lines)
    assert any(line.startswith("idle (no traffic, 15 s): platform 0.150 cores") for line in lines)
    assert any("msgs/s per order: 10.0" in line and "messages per order: 14.0" in line for line in lines)
    assert any("5 abandoned" in line for line in lines)
    assert lines[-1].endswith("ratio 0.100")
    assert result.to_dict()["sustained_orders_per_s"] == 10
