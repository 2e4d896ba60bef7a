"""The dry-run plan of a drill: its phases, the chaos timeline (the chaos dry run's), the durations.

Pure: ``plan_lines`` reads a loaded scenario and says what a run would do, in order, without starting
anything. The runner prints the same plan at the start of a real run, so a log always shows what was
meant to happen next to what did.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.drill.scenario import LoadedScenario

#: Rough figures measured on the project's machines (a demo run: cluster up 13.7 s, the 106 queues of
#: the topology 7.3 s, link proxies 2.6 s, 13 replicas ready 14.8 s, audit and reports 3-10 s, stopping
#: the system and the cluster 17.7 s).
CLUSTER_START_S = 13.0
PROVISION_S = 8.0
LINKS_S = 3.0
SYSTEM_START_S = 15.0
DRAIN_TYPICAL_S = 5.0
AUDIT_S = 8.0
TEARDOWN_S = 12.0
#: Couriers are idle again about this long after the last order of a compressed (fast) scenario.
LINGER_TYPICAL_S = 65.0


@dataclass(frozen=True)
class Estimate:
    """Wall-time estimate of a run, seconds."""

    setup: float
    traffic: float
    linger_typical: float
    linger_max: float
    drain_max: float
    finish: float

    @property
    def typical(self) -> float:
        """What a run usually takes."""
        return (
            self.setup
            + self.traffic
            + self.linger_typical
            + min(DRAIN_TYPICAL_S, self.drain_max)
            + self.finish
        )

    @property
    def most(self) -> float:
        """With the full linger and drain deadlines."""
        return self.setup + self.traffic + self.linger_max + self.drain_max + self.finish


def estimate(sc: LoadedScenario, starts_cluster: bool) -> Estimate:
    """The run's wall time (setup, traffic, linger, drain, audit and teardown)."""
    m = sc.model
    setup = (
        (CLUSTER_START_S if starts_cluster else 0.0)
        + PROVISION_S
        + (LINKS_S if sc.uses_link_faults() else 0.0)
        + SYSTEM_START_S
    )
    finish = AUDIT_S + TEARDOWN_S + (5.0 if starts_cluster else 0.0)
    linger = m.traffic.linger
    return Estimate(setup, m.duration, min(linger, LINGER_TYPICAL_S), linger, m.drain_deadline, finish)


def _s(x: float) -> str:
    return f"{x:g} s" if x < 120 else f"{x:g} s ({x / 60:.1f} min)"


def plan_lines(sc: LoadedScenario, *, cluster: str, run_dir: str, starts_cluster: bool) -> list[str]:
    """The plan as lines. ``cluster`` says where the brokers come from (start / reuse / external)."""
    from chaos.experiment import timeline

    m = sc.model
    reps = sc.replicas()
    out = [f"drill {m.name}: {m.description}".rstrip(": "), f"  scenario file {sc.path}", "phases:"]
    out.append(f"  1. run dir      {run_dir}")
    out.append(f"  2. cluster      {cluster}")
    out.append(
        f"  3. provision    vhost {m.cluster.vhost!r}: the platform topology, one broker user per service, "
        "secrets file"
    )
    step = 4
    if sc.uses_link_faults():
        out.append(
            f"  {step}. links        a Toxiproxy proxy per node; services connect through them (link faults)"
        )
        step += 1
    services = ", ".join(f"{name} ×{n}" for name, n in reps.items())
    out.append(f"  {step}. system       {sc.spec_path}: {services}")
    out.append(f"                  wait until every replica is ready (at most {_s(m.system.ready_timeout)})")
    for sw in m.broken:
        env = " ".join(f"{k}={v}" for k, v in sw.env.items())
        out.append(
            f"                  BROKEN on purpose: {sw.service} gets {env}"
            + (f" — {sw.why}" if sw.why else "")
        )
    step += 1
    t = m.traffic
    rate = f"{t.rate:g}/s" if t.rate is not None else f"{sc.traffic.arrivals.rate:g}/s (the scenario's)"
    out.append(
        f"  {step}. traffic      simulator {sc.traffic.name} ({sc.traffic_path}), seed {t.seed}, rate {rate}, "
        f"for {_s(m.duration)}; couriers linger until idle, at most {_s(t.linger)}"
    )
    if t.locust is not None:
        lc = t.locust
        out.append(
            f"                  + Locust {lc.shape} shape, {lc.users} users (spawn {lc.spawn_rate:g}/s, "
            f"{lc.workers} workers) for {_s(m.duration)}"
        )
    if sc.experiment is None:
        out.append("     chaos        none")
    else:
        exp = sc.experiment
        out.append(
            f"     chaos        in parallel: {exp.experiment.title!r} ({sc.experiment_path}), seed "
            f"{exp.experiment.seed}, from traffic t={m.chaos.start:g} s; journal <run>/chaos/journal.jsonl"
        )
        if exp.steady_state:
            out.append("                  steady state: " + ", ".join(p.probe for p in exp.steady_state))
        out.append(
            "                  traffic t   experiment timeline (as `drill chaos run --dry-run` prints it)"
        )
        last_end = 0.0
        for pf in timeline(exp):
            at = f"{m.chaos.start + pf.at:8.2f}s" if pf.at is not None else "        - "
            out.append(f"                  {at}   {pf.describe()}")
            if pf.at is not None:
                last_end = max(last_end, m.chaos.start + pf.at + pf.duration)
        if last_end > m.duration + t.linger:
            out.append(
                f"                  note: the timed faults run until t≈{last_end:g} s, past the traffic "
                f"({m.duration:g} s + linger): whatever is still running then is stopped and undone"
            )
    step += 1
    out.append(
        f"  {step}. stop traffic, stop chaos, heal (journal + sweep), drain queues and outboxes "
        f"(at most {_s(m.drain_deadline)})"
    )
    step += 1
    slo = ", ".join(f"{k}={v}" for k, v in sc.slo.to_dict().items() if v is not None)
    out.append(f"  {step}. audit        report.json, junit.xml, summary.md, report.html; SLO: {slo}")
    step += 1
    out.append(f"  {step}. stop         everything this run started, by PID; print the verdict; exit with it")
    est = estimate(sc, starts_cluster)
    out.append(
        f"duration: about {_s(round(est.typical))}, at most {_s(round(est.most))} (setup ~{est.setup:g} s, "
        f"traffic {m.duration:g} s, linger ≤ {t.linger:g} s, drain ≤ {m.drain_deadline:g} s, "
        f"audit + teardown ~{est.finish:g} s)"
    )
    return out
