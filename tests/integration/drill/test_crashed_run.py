"""A SIGKILLed drill runner leaves nothing behind once a user types ``./drill chaos heal``, ``./drill
system down`` and ``./drill cluster down`` — with no argument: they find the crashed run themselves.

The drill (``scenarios/crash-held-faults.toml`` here: intake only, 2 orders/s) starts a 3-node rig of its
own, link proxies, the supervisor and the simulator, and holds three faults: a SIGSTOPped replica, a
partition (iptables chain ``DRILL<block>``), a link down. The runner gets ``kill -9`` while they hold.
The commands run as a user's would, with ``DRILL_ROOT`` pointing at a directory of this test so that
"the project's" ``.drill/runs`` is this test's and no real rig of the machine is touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.faults.partition import chain_exists
from chaos.journal import Journal
from rig import procs
from rig.cluster import ClusterSpec
from rig.ports import port_free

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[3]
SCENARIO = Path(__file__).parent / "scenarios" / "crash-held-faults.toml"
# Layouts for the drill's own rig, apart from the session cluster's (tests/integration/conftest.py).
CANDIDATES = [(8100, 50), (8200, 51), (8300, 52), (8400, 53)]


def _free_layout(run_dir: Path) -> ClusterSpec:
    for base, block in CANDIDATES:
        spec = ClusterSpec(run_dir=run_dir, port_base=base, address_block=block, nodes=3)
        ports = [(n.host, p) for n in spec.all_nodes() for p in (n.amqp_port, n.mgmt_port, n.prometheus_port, n.dist_port)]  # fmt: skip
        if all(port_free(h, p) for h, p in [*ports, ("127.0.0.1", spec.epmd_port)]) and not chain_exists(
            f"DRILL{block}"
        ):
            return spec
    raise RuntimeError(f"no free layout among {CANDIDATES}")


def drill(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    print(f"$ ./drill {' '.join(args)}  -> exit {res.returncode}\n{res.stdout}{res.stderr}")
    return res


def recorded_pids(run: Path) -> dict[str, list[int]]:
    pids = json.loads((run / "pids.json").read_text())
    out: dict[str, list[int]] = {}
    for key, value in pids.items():
        if key == "runner":
            continue
        values = value if isinstance(value, list) else [value]
        out[key] = [v for v in values if isinstance(v, int)]
    return out


@pytest.fixture
def crashed_run(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], ClusterSpec]]:
    """A drill run whose runner was SIGKILLed with its three faults held; after the test, whatever the
    commands under test left is stopped (by the same commands, then by the recorded PIDs)."""
    root = tmp_path / "root"
    runs = root / ".drill" / "runs"
    spec = _free_layout(tmp_path / "rig")
    run_env = {
        **os.environ,
        "DRILL_CLUSTER_PORT_BASE": str(spec.port_base),
        "DRILL_CLUSTER_ADDRESS_BLOCK": str(spec.address_block),
    }
    user_env = {**os.environ, "DRILL_ROOT": str(root)}
    for key in ("DRILL_CLUSTER_RUN_DIR", "DRILL_SYSTEM_DIR", "DRILL_CHAOS_JOURNAL"):
        user_env.pop(key, None)
    log = (tmp_path / "runner.out").open("wb")
    runner = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(SCENARIO), "--cluster-dir", str(spec.run_dir),
         "--runs-dir", str(runs)],
        cwd=ROOT, env=run_env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    run: Path | None = None
    try:
        deadline = time.monotonic() + 300
        while True:
            assert runner.poll() is None, (tmp_path / "runner.out").read_text()[-4000:]
            dirs = sorted(runs.glob("*-crash-held-faults")) if runs.is_dir() else []
            run = dirs[0] if dirs else None
            if run is not None:
                records = Journal(run / "chaos" / "journal.jsonl").records()
                applied = {r["kind"] for r in records if r["event"] == "applied"}
                ledger = run / "simulator" / "ledger.jsonl"
                if applied == {"pause_replica", "partition", "link_down"} and ledger.is_file():
                    break
            assert time.monotonic() < deadline, "the drill never held its three faults"
            time.sleep(0.2)
        os.kill(runner.pid, signal.SIGKILL)  # no chance to heal, stop or report
        runner.wait(timeout=10)
        yield run, user_env, spec
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        log.close()
        if run is not None:
            # Mend what the test may have left: the commands under test first, then the PIDs themselves.
            for cmd in (("chaos", "heal"), ("system", "down"), ("cluster", "down")):
                drill(*cmd, "--run", str(run), env=user_env)
            for pids in recorded_pids(run).values():
                for pid in pids:
                    if procs.alive(pid) and str(run) in " ".join(procs.cmdline(pid)):
                        os.kill(pid, signal.SIGKILL)


def test_heal_then_down_leave_nothing_of_a_sigkilled_runner(
    crashed_run: tuple[Path, dict[str, str], ClusterSpec],
) -> None:
    run, env, spec = crashed_run
    chain = f"DRILL{spec.address_block}"
    pids = recorded_pids(run)
    journal = Journal(run / "chaos" / "journal.jsonl")
    paused = next(f.undo["pid"] for f in journal.open_faults() if f.kind == "pause_replica")
    # What the kill left: the faults held, the traffic and the platform running.
    assert {f.kind for f in journal.open_faults()} == {"pause_replica", "partition", "link_down"}
    assert procs.stopped(paused) and chain_exists(chain)
    assert pids["simulator"] and all(procs.alive(p) for p in pids["simulator"] + pids["supervisor"])
    assert pids["links"] and pids["cluster"] and all(procs.alive(p) for p in pids["links"])
    system = json.loads((run / "system.json").read_text())
    replicas = [r["pid"] for r in system["replicas"] if r.get("pid")]

    heal = drill("chaos", "heal", env=env)
    assert heal.returncode == 0, heal.stderr
    assert f"crashed run {run}" in heal.stdout
    assert "stopped the run's simulator" in heal.stdout
    for kind in ("pause_replica", "partition", "link_down"):
        assert f"undid {kind}" in heal.stdout, heal.stdout
    assert journal.open_faults() == []
    assert not any(procs.alive(p) for p in pids["simulator"])
    assert not chain_exists(chain)
    assert not procs.stopped(paused), "the frozen replica was not resumed"
    assert not any(procs.stopped(p) for p in replicas)

    down = drill("system", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert "stopped the run's supervisor" in down.stdout
    assert not any(procs.alive(p) for p in pids["supervisor"] + pids.get("replicas", []) + replicas)

    down = drill("cluster", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert "stopped the run's link proxies" in down.stdout
    assert f"stopped the run's cluster in {spec.run_dir}" in down.stdout

    alive = {k: [p for p in v if procs.alive(p)] for k, v in recorded_pids(run).items()}
    assert not any(alive.values()), alive
    assert not chain_exists(chain)
    assert not (spec.run_dir / "links.json").exists() and not (spec.run_dir / "state.json").exists()
    # The run stays without a verdict, but with nothing left a second heal passes it over.
    again = drill("chaos", "heal", env=env)
    assert again.returncode == 0, again.stderr
    assert "nothing to heal" in again.stdout and str(run) not in again.stdout
