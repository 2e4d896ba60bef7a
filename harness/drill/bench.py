"""``drill bench platform``: the highest order rate the whole platform sustains on the 3-node cluster,
what each order costs (messages, CPU-seconds per role), what the platform costs with no traffic, and the
brokers' own ceiling measured in the same run.

One cluster, one provisioned platform, one system; then:

1. **Idle.** Once every replica is ready and has settled (``IDLE_SETTLE_S``), ``idle_s`` seconds with no
   traffic: the cores each role uses (brokers and services), i.e. what the platform costs before a single
   order. The issue's budget is about this figure, so it is measured in every bench, not guessed.
2. **Steps** of rising offered load, each a simulator run of its own (own run dir, same retailers)
   followed by the audit of that step. A step is *sustained* when the platform served what it admitted:
   the audit is valid (nothing lost, nothing unexpected, no duplicated effect), every order got an answer
   (no unknown outcome, none rejected), the couriers finished every delivery within the linger, and **no
   accepted order was abandoned or left unfinished** — the served/abandoned rule of the drill's own audit
   (:mod:`reports.service`, the check ``no_order_abandoned``: an order refused by every courier asked is
   the world's no, not the platform's failure) — and no shed order was given up by its retailer. Intake
   may shed (admission control: ``503`` + ``Retry-After``); a step that shed is sustained at its
   *admitted* rate (the orders accepted during its traffic, per second), not the offered one, and ends
   the climb: the platform's edge is found. (Before admission control this rule was a heuristic: the share
   of orders that got a courier had to hold at 80% of the first step's; the audit's verdict replaces it.)

A resource sampler (:class:`rig.resources.ResourceSampler`, ``/proc``, once a second) runs from the idle
window to the last step into ``RUN/resources.jsonl``; each step's CPU-seconds per role are summed over
the step's whole life (first order until the platform has drained — every queue and outbox empty,
with the customers' phones still on, as a drill drains — and the simulator has exited: its orders'
deliveries included), and divided by its accepted orders, gross and net of the idle cost over the same
span.

The ceiling is raw aio-pika on the same cluster (``system.messaging.bench.bench_raw``: confirm window,
manual acks, a quorum queue), measured before the steps. The last line is the ratio of the messages the
platform moved per second at its best sustained step (every confirmed publish: the services' outbox rows
sent and the couriers' messages) to that ceiling. Everything is also written to ``RUN/bench.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import rundir

if TYPE_CHECKING:
    from rig.supervisor import SystemHandle

ROOT = Path(__file__).resolve().parents[2]
#: Seconds the system is left alone after every replica is ready, before the idle window: start-up work
#: (declares, first relay scans, lease takeovers) is not idle cost.
IDLE_SETTLE_S: Final = 5.0
#: The simulator's linger after a step's traffic: couriers finish the deliveries under way (stops early
#: once idle).
LINGER: Final = "90s"


@dataclass
class Step:
    """One offered rate and what the audit and the sampler said about it."""

    rate: float
    orders: int
    accepted: int
    rejected: int
    unknown: int
    lost: int
    valid: bool
    finished: bool
    published_per_s: float
    booked: int = 0
    #: accepted orders the platform abandoned (``no_order_abandoned``); None: not judged (no ledger)
    abandoned: int | None = None
    #: accepted orders never told an end (the loss audit's business: lost, parked or still under way)
    unfinished: int = 0
    served_share: float | None = None
    #: orders shed at least once by admission control; of them, given up by their retailer
    shed_orders: int = 0
    given_up: int = 0
    #: orders accepted during the step's traffic window, and that window's length (s)
    admitted: int = 0
    traffic_s: float = 0.0
    #: messages the platform moved (confirmed publishes) over the step's whole life
    messages: int = 0
    #: seconds from the step's first order to the simulator's exit (its linger and the drain included)
    span_s: float = 0.0
    #: CPU-seconds per role over ``span_s`` (rig.resources roles: broker.N, service.X, simulator, ...)
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def booked_share(self) -> float:
        return self.booked / self.accepted if self.accepted else 0.0

    @property
    def shed(self) -> bool:
        """Intake shed some of this step's orders: the offered rate was above what it admits."""
        return self.shed_orders > 0

    @property
    def admitted_per_s(self) -> float:
        return self.admitted / self.traffic_s if self.traffic_s > 0 else 0.0

    @property
    def sustained(self) -> bool:
        """Served what it admitted: nothing lost, abandoned, unfinished, unknown or given up."""
        return (
            self.valid
            and self.unknown == 0
            and self.rejected == 0
            and self.finished
            and self.accepted > 0
            and self.abandoned == 0
            and self.unfinished == 0
            and self.given_up == 0
        )

    @property
    def sustained_rate(self) -> float:
        """The rate this step sustained: the offered one, or the admitted one when intake shed."""
        if not self.sustained:
            return 0.0
        return min(self.rate, self.admitted_per_s) if self.shed else self.rate

    @property
    def messages_per_order(self) -> float:
        """Every message the step moved (its deliveries' courier updates and location pings included),
        per accepted order."""
        return self.messages / self.accepted if self.accepted else 0.0

    def why_not(self) -> str:
        """Why the step is not sustained ('' when it is)."""
        reasons = []
        if not self.valid or self.lost:
            reasons.append(f"audit invalid (lost {self.lost})")
        if self.abandoned is None:
            reasons.append("abandoned not judged")
        elif self.abandoned:
            reasons.append(f"{self.abandoned} abandoned")
        if self.unfinished:
            reasons.append(f"{self.unfinished} unfinished")
        if self.unknown:
            reasons.append(f"{self.unknown} unknown")
        if self.rejected:
            reasons.append(f"{self.rejected} rejected")
        if self.given_up:
            reasons.append(f"{self.given_up} shed orders given up")
        if not self.finished:
            reasons.append("deliveries not finished within the linger")
        if not self.accepted:
            reasons.append("nothing accepted")
        return ", ".join(reasons)

    def to_dict(self) -> dict[str, Any]:
        """The step in bench.json (fields and derived figures)."""
        return {
            **asdict(self),
            "sustained": self.sustained,
            "sustained_rate": self.sustained_rate,
            "admitted_per_s": round(self.admitted_per_s, 3),
            "booked_share": round(self.booked_share, 4),
            "messages_per_order": round(self.messages_per_order, 3),
            "why_not": self.why_not(),
        }


# --------------------------------------------------------------------------------------- CPU accounting
def cpu_seconds(records: Iterable[Mapping[str, Any]], t0: float, t1: float) -> dict[str, float]:
    """CPU-seconds per role over the wall-clock window ``[t0, t1]``, from resources.jsonl records.

    Each record covers ``(t - dt, t]`` at ``cpu`` percent of one core; a record straddling an edge counts
    for its overlap only, so a window needs no alignment with the sampler's ticks."""
    out: dict[str, float] = {}
    for rec in records:
        t, dt = float(rec.get("t", 0.0)), float(rec.get("dt", 0.0))
        overlap = min(t, t1) - max(t - dt, t0)
        if overlap <= 0:
            continue
        for role, usage in (rec.get("roles") or {}).items():
            out[role] = out.get(role, 0.0) + float(usage.get("cpu", 0.0)) / 100.0 * overlap
    return out


def group(per_role: Mapping[str, float]) -> dict[str, float]:
    """Roles summed into ``brokers`` (broker.N), ``services`` (service.X) and ``platform`` (both)."""
    brokers = sum(v for r, v in per_role.items() if r.startswith("broker."))
    services = sum(v for r, v in per_role.items() if r.startswith("service."))
    return {"brokers": brokers, "services": services, "platform": brokers + services}


def per_order(step: Step, idle_cores: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """role -> {"gross": CPU-s per accepted order, "net": the same less the role's idle cores over the
    step's span} (roles and the groups of :func:`group`)."""
    if not step.accepted:
        return {}
    roles = {**step.cpu_s, **group(step.cpu_s)}
    idle = {**idle_cores, **group(idle_cores)}
    return {
        role: {
            "gross": cpu / step.accepted,
            "net": max(cpu - idle.get(role, 0.0) * step.span_s, 0.0) / step.accepted,
        }
        for role, cpu in roles.items()
    }


def read_records(path: Path) -> list[dict[str, Any]]:
    """The resource records written so far (a torn last line is skipped)."""
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


@dataclass
class BenchResult:
    """What :func:`run_bench` measured (written to ``RUN/bench.json``)."""

    ceiling: float
    steps: list[Step]
    #: cores per role with no traffic, and the window they were measured over (s; 0: not measured)
    idle_cores: dict[str, float] = field(default_factory=dict)
    idle_s: float = 0.0

    @property
    def best(self) -> Step | None:
        """The step with the highest sustained rate (None: none sustained)."""
        return max((s for s in self.steps if s.sustained), key=lambda s: s.sustained_rate, default=None)

    @property
    def ratio(self) -> float:
        best = self.best
        return best.published_per_s / self.ceiling if best is not None and self.ceiling else 0.0

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "ceiling_msgs_per_s": self.ceiling,
            "idle": {"seconds": self.idle_s, "cores": self.idle_cores, "groups": group(self.idle_cores)},
            "steps": [{**s.to_dict(), "cpu_s_per_order": per_order(s, self.idle_cores)} for s in self.steps],
            "sustained_orders_per_s": best.sustained_rate if best is not None else 0.0,
            "sustained_step": None if best is None else best.rate,
            "messages_per_order": None if best is None else best.messages_per_order,
            "platform_msgs_per_s": None if best is None else best.published_per_s,
            "ratio": self.ratio,
        }


_COURIER_PUBLISHES = (
    "quote_sent",
    "booking_answer_sent",
    "cancel_answer_sent",
    "status_sent",
    "location_sent",
)


def _messages_moved(run_dir: Path, step_dir: Path, t0: float, t1: float) -> int:
    """Messages confirmed by the brokers during [t0, t1]: every service's outbox rows marked sent (the
    intake relay's included), plus what the couriers published (the simulator's ledger)."""
    import sqlite3

    total = 0
    for db in run_dir.glob("*.db"):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
                row = conn.execute(
                    "SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND sent_at BETWEEN ? AND ?", (t0, t1)
                ).fetchone()
                total += int(row[0])
        except sqlite3.Error:
            continue  # a DB without an outbox
    ledger = step_dir / rundir.SIMULATOR_LEDGER
    if ledger.exists():
        with open(ledger, "rb") as fh:
            total += sum(
                1 for line in fh if any(f'"kind":"{k}"'.encode() in line for k in _COURIER_PUBLISHES)
            )
    return total


def run_bench(
    cluster: Any,
    run_dir: Path,
    rates: list[float],
    step_s: float,
    say: Callable[[str], object],
    vhost: str = "drill",
    idle_s: float = 15.0,
) -> BenchResult:
    """Ceiling, idle cost, then the steps until one is not sustained (or shed); see the module docstring."""
    from rig.ports import free_port_base
    from rig.provision import provision_platform
    from rig.resources import ResourceSampler, drill_roles
    from rig.supervisor import SystemHandle, load_spec
    from system.messaging.bench import bench_raw
    from system.messaging.settings import MessagingSettings
    from system.platform.settings import amqp_urls_from_secrets

    run_dir.mkdir(parents=True, exist_ok=True)
    say("brokers' ceiling: raw aio-pika, 20 000 persistent messages through a quorum queue")
    ceiling = asyncio.run(bench_raw(MessagingSettings(amqp_urls=cluster.amqp_urls), 20_000, 512))
    say(f"  {ceiling:,.0f} msgs/s")
    result = BenchResult(ceiling, [])
    provisioned = provision_platform(cluster, run_dir, vhost=vhost)
    secrets = json.loads(provisioned.secrets_path.read_text())
    retailers = run_dir / rundir.RETAILERS
    base = free_port_base(4)
    spec = run_dir / rundir.SERVICES
    spec.write_text(
        re.sub(
            r"\{port:8080\+replica\}",
            f"{{port:{base}+replica}}",
            (ROOT / "system" / "services.toml").read_text(),
        )
    )
    replicas = {s.name: s.replicas for s in load_spec(spec)}
    env = {
        "DRILL_PLATFORM_SECRETS": str(provisioned.secrets_path),
        "DRILL_RETAILERS": str(retailers),
        "DRILL_NOTIFICATIONS_NOTIFY_URL": f"http://127.0.0.1:{base + 3}",
        "DRILL_MSG_RECONNECT_MAX_S": "1.0",
    }
    handle = SystemHandle.start(run_dir, spec, timeout=60, env=env)
    simulator: dict[str, list[int]] = {}
    sampler = ResourceSampler(run_dir / rundir.RESOURCES, drill_roles(cluster, run_dir, lambda: simulator))
    try:
        _wait_ready(handle)
        sampler.start()
        if idle_s > 0:
            time.sleep(IDLE_SETTLE_S)
            say(f"idle: {idle_s:g} s with no traffic")
            t0 = time.time()
            time.sleep(idle_s)
            t1 = time.time()
            time.sleep(1.5)  # the sampler's record covering t1 is written
            used = cpu_seconds(read_records(run_dir / rundir.RESOURCES), t0, t1)
            result.idle_cores, result.idle_s = {r: v / (t1 - t0) for r, v in used.items()}, t1 - t0
        intake = ",".join(f"http://127.0.0.1:{base + i}" for i in range(replicas["intake"]))
        couriers = ",".join(amqp_urls_from_secrets(secrets, "couriers"))
        for i, rate in enumerate(rates):
            step = _run_step(i, rate, len(rates), step_s, run_dir, retailers, intake, couriers, base, env,
                             simulator, say, cluster, vhost)  # fmt: skip
            result.steps.append(step)
            _write(run_dir, result)
            if not step.sustained or step.shed:
                break
    finally:
        sampler.stop()
        handle.stop()
    _write(run_dir, result)
    return result


def _run_step(
    i: int,
    rate: float,
    count: int,
    step_s: float,
    run_dir: Path,
    retailers: Path,
    intake: str,
    couriers: str,
    base: int,
    env: Mapping[str, str],
    simulator: dict[str, list[int]],
    say: Callable[[str], object],
    cluster: Any,
    vhost: str,
) -> Step:
    """One step: the simulator's run at ``rate``, the platform drained while the customers' phones are
    still on (as a drill does: a notification still owed at the end of the linger reaches its customer,
    instead of leaving its order "unfinished"), its audit, its messages and its CPU per role."""
    from reports.audit import audit_run, load_config
    from reports.checks import ONE_BOOKING
    from reports.service import UNFINISHED
    from reports.slo import load_slo
    from simulator.config import load_scenario
    from simulator.world import build_retailers, write_retailers_file

    step_dir = run_dir / f"step-{i}-{rate:g}"
    seed = 100 + i
    # New orders every step (a new seed), so the platform's retailers must be that seed's: the
    # intake and quoting replicas reload the file when it changes.
    write_retailers_file(retailers, seed, build_retailers(seed, load_scenario("steady-quick")))
    time.sleep(2.5)
    say(f"step {i + 1}/{count}: {rate:g} orders/s for {step_s:g} s")
    t0, wall0 = time.monotonic(), time.time()
    argv = [sys.executable, "-m", "simulator", "simulate", "--scenario", "steady-quick", "--seed", str(seed),
            "--duration", f"{step_s:g}s", "--rate", f"{rate:g}", "--target", intake,
            "--retailers", str(retailers), "--listen", f"127.0.0.1:{base + 3}", "--amqp", couriers,
            "--run-dir", str(step_dir), "--linger", LINGER, "--hold-receiver"]  # fmt: skip
    step_dir.mkdir(parents=True, exist_ok=True)
    with open(step_dir / rundir.SIMULATOR_OUT, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})
        simulator["simulator"] = [proc.pid]
        try:
            holding = step_dir / rundir.RECEIVER_HOLDING
            while proc.poll() is None and not holding.exists():
                time.sleep(0.2)
            if proc.poll() is None:
                _drain(cluster, run_dir, step_dir, vhost, say)
                proc.send_signal(signal.SIGINT)  # the receiver's planned stop: it exits 0
                proc.wait(30)
        finally:
            if proc.poll() is None:  # interrupted: the simulator stops with us
                proc.terminate()
                proc.wait(30)
            simulator.pop("simulator", None)
    wall1 = time.time()
    span = max(time.monotonic() - t0, 1e-9)
    messages = _messages_moved(run_dir, step_dir, wall0, wall1)
    time.sleep(1.5)  # the sampler's record covering wall1 is written
    cpu = cpu_seconds(read_records(run_dir / rundir.RESOURCES), wall0, wall1)
    report = audit_run(step_dir, load_config(step_dir), load_slo(step_dir))
    orders = report.flows.get("orders")
    booking = next((c for c in report.checks if c.name == ONE_BOOKING), None)
    booked = int(booking.counts.get("orders_booked", 0)) if booking is not None else 0
    summary = json.loads((step_dir / rundir.SIMULATOR_SUMMARY).read_text())
    finished = '"idle": false' not in (step_dir / rundir.SIMULATOR_LEDGER).read_text()[-4000:]
    service = report.service
    window_end = wall0 + step_s
    step = Step(
        rate=rate,
        orders=int(summary.get("orders", 0)),
        accepted=int(summary["counts"].get("accepted", 0)),
        rejected=int(summary["counts"].get("rejected", 0)),
        unknown=int(summary["counts"].get("unknown", 0)),
        lost=len(orders.lost) if orders is not None else 0,
        valid=report.valid,
        finished=finished,
        published_per_s=messages / span,
        booked=booked,
        abandoned=report.abandoned,
        unfinished=service.counts[UNFINISHED] if service is not None else 0,
        served_share=service.served_share if service is not None else None,
        shed_orders=service.shedding.shed_orders if service is not None else 0,
        given_up=service.shedding.given_up_after_shed if service is not None else 0,
        admitted=sum(
            1
            for e in (service.endings if service is not None else [])
            if e.accepted_at is not None and wall0 <= e.accepted_at <= window_end
        ),
        traffic_s=step_s,
        messages=messages,
        span_s=span,
        cpu_s=cpu,
    )
    served = "" if step.served_share is None else f", served {step.served_share:.0%} of serviceable"
    shed = f", shed {step.shed_orders} (admitted {step.admitted_per_s:.1f}/s)" if step.shed else ""
    say(
        f"  accepted {step.accepted}/{step.orders}, rejected {step.rejected}, unknown {step.unknown}, "
        f"lost {step.lost}, abandoned {step.abandoned}, unfinished {step.unfinished}{served}{shed}, "
        f"got a courier {step.booked_share:.0%}, "
        f"{'finished' if finished else 'NOT finished within the linger'}; platform moved "
        f"{step.published_per_s:,.0f} msgs/s, {step.messages_per_order:.1f} per order"
        f" -> {'sustained' if step.sustained else 'NOT sustained: ' + step.why_not()}"
    )
    return step


def _drain(cluster: Any, run_dir: Path, step_dir: Path, vhost: str, say: Callable[[str], object]) -> None:
    """Wait for the platform's queues and outboxes to empty, notifications being retried included (the
    drill's own drain, :func:`rig.drain.drain`)."""
    from harness.drill.observers import DRAIN_IGNORE
    from rig.drain import drain

    result = drain(
        [cluster.management_url(n) for n in cluster.node_indices],
        cluster.admin,
        sorted(run_dir.glob("*.db")),
        step_dir,
        amqp_urls=cluster.amqp_urls,
        only=f"^{re.escape(vhost)}/",
        ignore=DRAIN_IGNORE,
        receiver_up=True,
    )
    if not result.drained:
        say(f"  NOT drained after {result.seconds:.0f} s: {result.leftover}")


def _write(run_dir: Path, result: BenchResult) -> None:
    """bench.json, rewritten after every step (an interrupted bench keeps what it measured)."""
    (run_dir / rundir.BENCH).write_text(json.dumps(result.to_dict(), indent=2) + "\n")


def _wait_ready(handle: SystemHandle, timeout: float = 120.0) -> None:
    """Until every replica runs and has written its ready marker (intake's HTTP replicas included:
    they write theirs once they listen), by the supervisor's own rule (:meth:`SystemHandle.is_ready`)."""
    deadline = time.monotonic() + timeout
    while True:
        waiting = [f"{r['service']}#{r['index']}" for r in handle.replicas() if not handle.is_ready(r)]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout:.0f} s: {', '.join(waiting)}")
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------ printing
def report_lines(result: BenchResult) -> list[str]:
    """What the bench prints after its steps; the ratio to the brokers' ceiling is the LAST line."""
    lines: list[str] = []
    idle = result.idle_cores
    if result.idle_s > 0:
        g = group(idle)
        lines.append(
            f"idle (no traffic, {result.idle_s:.0f} s): platform {g['platform']:.3f} cores = brokers "
            f"{g['brokers']:.3f} + services {g['services']:.3f}"
        )
        for role in sorted(r for r in idle if r.startswith(("broker.", "service."))):
            lines.append(f"  idle {role:<24} {idle[role]:.3f} cores")
    best = result.best
    last = result.steps[-1] if result.steps else None
    if best is None:
        lines.append("sustained: 0 orders/s (no step offered was sustained)")
    else:
        how = (
            f"admitted at the offered {best.rate:g}/s"
            if not best.shed
            else f"intake shed above it, offered {best.rate:g}/s"
        )
        lines.append(
            f"sustained: {best.sustained_rate:g} orders/s ({how}; lost 0, abandoned 0, every delivery "
            f"finished)"
        )
    if last is not None and not last.sustained:
        lines.append(f"  the next step, {last.rate:g}/s, was not: {last.why_not()}")
    elif best is not None and best.shed:
        lines.append(f"  intake shed at {best.rate:g}/s: the edge is between its admitted and offered rate")
    elif best is not None:
        lines.append(
            f"  every step offered was sustained: the limit is above {best.rate:g} orders/s, not found "
            f"(offer more, e.g. --rates {best.rate:g},{2 * best.rate:g})"
        )
    shown = best or last
    if shown is not None and shown.accepted:
        lines.append(
            f"msgs/s per order: {shown.published_per_s / shown.rate:.1f} (platform moved "
            f"{shown.published_per_s:,.0f} msgs/s at {shown.rate:g} orders/s, averaged over the step and its "
            f"deliveries); messages per order: {shown.messages_per_order:.1f}"
        )
        costs = per_order(shown, idle)
        lines.append(
            f"CPU-seconds per order at {shown.rate:g} orders/s ({shown.accepted} orders over {shown.span_s:.0f} s;"
            f" gross, and net of the idle cost):"
        )
        order = sorted(r for r in costs if r.startswith(("broker.", "service.")))
        order += [r for r in ("simulator", "brokers", "services", "platform") if r in costs]
        for role in order:
            c = costs[role]
            lines.append(f"  {role:<24} {c['gross']:.4f}  net {c['net']:.4f}")
    lines.append(
        f"platform moved {best.published_per_s if best else 0:,.0f} msgs/s at "
        f"{best.sustained_rate if best else 0:g} orders/s; brokers' ceiling {result.ceiling:,.0f} msgs/s; "
        f"ratio {result.ratio:.3f}"
    )
    return lines
