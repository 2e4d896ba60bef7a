"""The broker setting: versions and where each is served from, the launch command of a rooted node, the
Debian root's build (temporary directory, rename, marker, lock), and the declarations per version."""

from __future__ import annotations

import os
import stat
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rig.cluster import ClusterSpec, LocalCluster, RootUnavailable
from rig.cluster import state as cluster_state
from rig.cluster._launch import Launch
from rig.cluster._roots import MARKER, ensure_root, root_ready
from rig.cluster.versions import (
    BROKERS,
    CHOICES,
    DEBIAN_BIN,
    debootstrap_command,
    host_codename,
    resolve,
    version_of,
)
from system.messaging.broker import UNLIMITED_DELIVERY_LIMIT, for_broker, major, server_version
from system.messaging.topology import QueueRole
from system.platform.topology import platform_topology

BIN = Path("/usr/lib/rabbitmq/bin")


# ------------------------------------------------------------------------- versions
@pytest.mark.parametrize(
    ("setting", "host", "rooted", "codename"),
    [
        ("system", "bookworm", False, None),
        ("system", "trixie", False, None),
        ("3.10", "bookworm", False, "bookworm"),  # Debian 12's own package
        ("4.0", "bookworm", True, "trixie"),  # Debian 13's package, in a root
        ("4.0", "trixie", False, "trixie"),  # a Debian 13 host needs no root
        ("3.10", "trixie", True, "bookworm"),
    ],
)
def test_a_version_the_host_lacks_is_served_from_a_root_of_its_debian(
    setting: str, host: str, rooted: bool, codename: str | None, tmp_path: Path
) -> None:
    broker = resolve(setting, host_codename=host, brokers_dir=tmp_path)
    assert broker.rooted is rooted
    assert broker.codename == codename
    assert broker.root == (tmp_path / codename if rooted and codename else None)
    assert broker.bin_dir == BIN


def test_unknown_versions_are_refused_naming_the_choices() -> None:
    assert CHOICES == ("system", "3.10", "4.0")
    with pytest.raises(ValueError, match=r"system, 3\.10, 4\.0"):
        resolve("4", host_codename="bookworm")
    with pytest.raises(ValueError, match="unknown broker"):
        ClusterSpec(broker="3.13")


def test_the_version_table() -> None:
    assert BROKERS["4.0"].codename == "trixie" and BROKERS["4.0"].default_delivery_limit == 20
    assert BROKERS["3.10"].codename == "bookworm" and BROKERS["3.10"].default_delivery_limit is None
    assert version_of("4.0.5") is BROKERS["4.0"] and version_of("3.10.8") is BROKERS["3.10"]
    assert version_of("3.13.7") is None and version_of("") is None
    assert debootstrap_command("trixie", Path("/t"), "http://m/debian") == [
        "debootstrap",
        "--variant=minbase",
        "--include=rabbitmq-server",
        "trixie",
        "/t",
        "http://m/debian",
    ]


def test_host_codename_reads_os_release(tmp_path: Path) -> None:
    (tmp_path / "os-release").write_text('NAME="Debian GNU/Linux"\nVERSION_CODENAME=bookworm\n')
    assert host_codename(tmp_path / "os-release") == "bookworm"
    assert host_codename(tmp_path / "missing") == ""


def test_the_broker_is_a_setting_env_included(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ClusterSpec().broker == "system"
    monkeypatch.setenv("DRILL_CLUSTER_BROKER", "4.0")
    assert ClusterSpec().broker == "4.0"


# ------------------------------------------------------------------------- launch
def test_a_host_node_runs_the_hosts_script_as_is(tmp_path: Path) -> None:
    launch = Launch(None, BIN, tmp_path)
    assert launch.command("rabbitmq-server") == [f"{BIN}/rabbitmq-server"]
    assert launch.command("rabbitmqctl", "-n", "x", "status") == [f"{BIN}/rabbitmqctl", "-n", "x", "status"]
    assert launch.env({"A": "1"}) == {"A": "1"}
    assert launch.server_binary() == BIN / "rabbitmq-server"


def test_a_rooted_node_runs_chrooted_in_a_mount_namespace_of_its_own() -> None:
    launch = Launch(Path("/c/brokers/trixie"), BIN, Path("/w/.drill/cluster"))
    cmd = launch.command("rabbitmqctl", "--longnames", "-n", "rabbit1@127.0.1.1", "version")
    # unshare (mounts die with the node) -> sh -> exec chroot -> the root's own script: one PID chain.
    assert cmd[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    assert cmd[5:7] == ["sh", "-c"]
    script = cmd[7]
    assert 'mount -t proc proc "$root/proc"' in script
    assert 'mount --bind "$dir" "$root$dir"' in script  # the run dir at the same path inside
    assert script.rstrip().endswith('exec chroot "$root" "$@"')
    assert cmd[8:] == [
        "drill-broker",
        "/c/brokers/trixie",
        "/w/.drill/cluster",
        f"{BIN}/rabbitmqctl",
        "--longnames",
        "-n",
        "rabbit1@127.0.1.1",
        "version",
    ]
    env = launch.env({"PATH": "/venv/bin:/usr/bin", "HOME": "/w/.drill/cluster/home"})
    assert env["LANG"] == env["LC_ALL"] == "C.UTF-8" and "/venv" not in env["PATH"]
    assert env["HOME"] == "/w/.drill/cluster/home"
    assert launch.server_binary() == Path("/c/brokers/trixie/usr/lib/rabbitmq/bin/rabbitmq-server")


def test_prepare_makes_the_mount_point_inside_the_root(tmp_path: Path) -> None:
    Launch(tmp_path / "root", BIN, tmp_path / "run").prepare()
    assert (tmp_path / "root" / str(tmp_path / "run").lstrip("/")).is_dir()


def test_a_handle_on_a_running_rooted_rig_launches_from_the_root_its_state_names(tmp_path: Path) -> None:
    st = cluster_state.ClusterState(
        provider="local",
        run_dir=str(tmp_path),
        cluster_name="c",
        admin_user="a",
        admin_password="p",
        nodes=[cluster_state.NodeState(1, "rabbit1@127.0.1.1", "127.0.1.1", 5701, 15701, 15751, 25701)],
        port_base=5700,
        address_block=1,
        broker="4.0",
        broker_root="/c/brokers/trixie",
    )
    cluster_state.save(tmp_path, st)
    assert cluster_state.load(tmp_path) == st
    lc = LocalCluster.attach(ClusterSpec(run_dir=tmp_path))
    assert lc.spec.broker == "4.0"
    assert lc.launch.root == Path("/c/brokers/trixie")
    assert lc.launch.command("rabbitmqctl")[0] == "unshare"
    # a state file of a rig started before the setting existed: the host's package
    legacy = (
        st.to_json()
        .replace('"broker": "4.0"', '"broker": "system"')
        .replace('"broker_root": "/c/brokers/trixie"', '"broker_root": null')
    )
    (tmp_path / "state.json").write_text(legacy)
    assert LocalCluster.attach(ClusterSpec(run_dir=tmp_path)).launch.root is None


# ------------------------------------------------------------------------- the root's build
def _fake_debootstrap(tmp_path: Path, body: str) -> Path:
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    script = bindir / "debootstrap"
    script.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bindir


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="building a root needs root privileges")


@needs_root
def test_a_root_is_built_in_a_temporary_directory_then_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake records where it was asked to build, and leaves a server script there.
    bindir = _fake_debootstrap(
        tmp_path,
        f"""\
        target="$4"
        echo "$target" > {tmp_path}/target
        echo "I: Retrieving InRelease"
        echo "I: Extracting zlib1g..."
        mkdir -p "$target{DEBIAN_BIN}" && printf '#!/bin/sh\\n' > "$target{DEBIAN_BIN}/rabbitmq-server"
        chmod +x "$target{DEBIAN_BIN}/rabbitmq-server"
        echo "I: Base system installed successfully."
        """,
    )
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    said: list[str] = []
    root = ensure_root("trixie", tmp_path / "brokers", say=said.append)
    assert root == tmp_path / "brokers" / "trixie" and root_ready(root)
    assert (root / MARKER).read_text().startswith("trixie built ")
    built_in = Path((tmp_path / "target").read_text().strip())
    assert built_in != root and built_in.parent == root.parent and not built_in.exists()
    assert any("debootstrap --variant=minbase --include=rabbitmq-server trixie" in line for line in said)
    assert any("Retrieving" in line for line in said) and any("Extracting" in line for line in said)
    assert any("root ready" in line for line in said)
    assert "Base system installed" in (tmp_path / "brokers" / "trixie.build.log").read_text()
    # cached: a second ask builds nothing
    (tmp_path / "target").unlink()
    assert ensure_root("trixie", tmp_path / "brokers", say=said.append) == root
    assert not (tmp_path / "target").exists()


@needs_root
def test_a_failed_build_leaves_nothing_that_could_be_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = _fake_debootstrap(
        tmp_path,
        f"""\
        mkdir -p "$4{DEBIAN_BIN}"
        echo "E: Failed getting release file http://deb.debian.org/debian/dists/trixie/Release"
        exit 1
        """,
    )
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    brokers = tmp_path / "brokers"
    with pytest.raises(RootUnavailable, match="Failed getting release file"):
        ensure_root("trixie", brokers, say=lambda _: None)
    assert sorted(p.name for p in brokers.iterdir()) == [".trixie.lock", "trixie.build.log"]


@needs_root
def test_a_half_built_root_is_never_used_but_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    brokers = tmp_path / "brokers"
    (brokers / "trixie" / str(DEBIAN_BIN).lstrip("/")).mkdir(parents=True)  # no marker: incomplete
    (brokers / ".trixie.partial").mkdir()
    bindir = _fake_debootstrap(
        tmp_path,
        f"""\
        mkdir -p "$4{DEBIAN_BIN}" && printf '#!/bin/sh\\n' > "$4{DEBIAN_BIN}/rabbitmq-server"
        chmod +x "$4{DEBIAN_BIN}/rabbitmq-server"
        """,
    )
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    said: list[str] = []
    root = ensure_root("trixie", brokers, say=said.append)
    assert root_ready(root)
    assert sum("removing an incomplete root" in line for line in said) == 2


@needs_root
def test_two_runs_asking_at_once_build_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = _fake_debootstrap(
        tmp_path,
        f"""\
        echo built >> {tmp_path}/builds
        sleep 0.5
        mkdir -p "$4{DEBIAN_BIN}" && printf '#!/bin/sh\\n' > "$4{DEBIAN_BIN}/rabbitmq-server"
        chmod +x "$4{DEBIAN_BIN}/rabbitmq-server"
        """,
    )
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    said: list[str] = []
    roots: list[Path] = []
    threads = [
        threading.Thread(target=lambda: roots.append(ensure_root("trixie", tmp_path / "b", say=said.append)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(roots) == 2 and roots[0] == roots[1] and root_ready(roots[0])
    assert (tmp_path / "builds").read_text().count("built") == 1
    assert any("another run is building" in line or "built by another run" in line for line in said)


def test_without_debootstrap_the_error_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    if os.geteuid() != 0:
        with pytest.raises(RootUnavailable, match="root privileges"):
            ensure_root("trixie", tmp_path / "b", say=lambda _: None)
    else:
        with pytest.raises(RootUnavailable, match="apt-get install -y debootstrap"):
            ensure_root("trixie", tmp_path / "b", say=lambda _: None)


# ------------------------------------------------------------------------- declarations per version
def test_parking_lots_and_retry_tiers_state_no_limit_and_work_queues_theirs() -> None:
    for q in platform_topology().declared_queues():
        if q.role is QueueRole.PLAIN:
            continue  # contract queues: exactly the arguments of docs/intake-api.md
        assert "x-delivery-limit" in q.arguments, q.name
        if q.role in (QueueRole.PARKED, QueueRole.RETRY):
            assert q.arguments["x-delivery-limit"] == UNLIMITED_DELIVERY_LIMIT, q.name
        else:
            assert q.arguments["x-delivery-limit"] > 0, q.name


@pytest.mark.parametrize(
    ("version", "kept"), [("3.10.8", False), ("3.13.7", False), ("4.0.5", True), ("4.1.0", True), ("", True)]
)
def test_no_limit_is_spelled_for_the_broker_declared_on(version: str, kept: bool) -> None:
    args: dict[str, Any] = {"x-queue-type": "quorum", "x-delivery-limit": -1}
    assert ("x-delivery-limit" in for_broker(args, version)) is kept
    assert for_broker({"x-delivery-limit": 20}, version) == {"x-delivery-limit": 20}
    assert args["x-delivery-limit"] == -1  # the topology's own arguments are left alone


def test_the_rig_table_and_the_platform_rule_agree() -> None:
    for line in BROKERS.values():
        kept = "x-delivery-limit" in for_broker({"x-delivery-limit": -1}, f"{line.name}.0")
        assert kept is line.accepts_unlimited, line.name


def test_the_version_comes_from_the_brokers_handshake() -> None:
    conn = SimpleNamespace(
        transport=SimpleNamespace(connection=SimpleNamespace(server_properties={"version": "4.0.5"}))
    )
    assert server_version(conn) == "4.0.5"  # type: ignore[arg-type]
    raw = SimpleNamespace(
        transport=SimpleNamespace(connection=SimpleNamespace(server_properties={"version": b"3.10.8"}))
    )
    assert server_version(raw) == "3.10.8"  # type: ignore[arg-type]
    assert server_version(SimpleNamespace(transport=None)) == ""  # type: ignore[arg-type]
    assert major("4.0.5") == 4 and major("") is None


def test_the_installed_version_picks_the_rules_of_its_line(tmp_path: Path) -> None:
    from rig.cluster.versions import NEWEST, installed_version, line_of

    (tmp_path / "bin").mkdir()
    assert installed_version(tmp_path / "bin") is None and line_of(None) is NEWEST
    (tmp_path / "lib" / "rabbitmq_server-3.10.8").mkdir(parents=True)
    assert installed_version(tmp_path / "bin") == "3.10.8"
    assert line_of("3.10.8") is BROKERS["3.10"] and line_of("4.0.5") is BROKERS["4.0"]
    assert line_of("3.13.7") is NEWEST  # unknown: the newer behaviour
    # 4.0's peer discovery must keep asking while its seed node boots; 3.10 asks once (it forms faster)
    assert BROKERS["4.0"].discovery_retry_limit * BROKERS["4.0"].discovery_retry_interval_ms >= 10_000
    assert (BROKERS["3.10"].discovery_retry_limit, BROKERS["3.10"].discovery_retry_interval_ms) == (1, 100)


def test_a_boot_another_fault_stopped_is_not_a_crash(tmp_path: Path) -> None:
    """Seen in a 4.0 demo: a full outage stopped every node while the killed one booted again; counted as
    two boot crashes, the kill's undo ended in BootCrashLoop and the run was INCONCLUSIVE."""
    lc = LocalCluster(ClusterSpec(run_dir=tmp_path / "rig"))
    assert lc._stopped_during_boot(1) is None  # never spawned, never stopped
    lc._spawned_at[1] = 10.0
    lc._stopped_at[1] = 9.0  # stopped before this boot (the kill that made it boot again)
    assert lc._stopped_during_boot(1) is None
    lc._stopped_at[1] = 11.0  # stopped while this boot ran
    assert "stopped on purpose" in (lc._stopped_during_boot(1) or "")
