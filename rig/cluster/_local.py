"""A real RabbitMQ cluster of plain OS processes on loopback, from the Debian package.

Written by hand because no library starts a multi-node RabbitMQ without Docker. The recipe (env vars,
boot-time classic_config peer discovery, per-node loopback addresses, an epmd of our own) is the one
measured in ``shared/rabbitmq-local.md``: ~8 s from cold for 3 nodes.

Ownership: every PID is recorded in the state file before or right after it is spawned, and only those
PIDs are ever signalled. Nodes run in their own sessions (setsid) so a Ctrl-C in the terminal reaches
the CLI, which then tears down what it started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rig import procs
from rig.cluster import _boot, _roots, versions
from rig.cluster import state as cluster_state
from rig.cluster._boot import BootRetry
from rig.cluster._errors import (
    BootCrashLoop,
    ClusterAlreadyRunning,
    ClusterError,
    ClusterNotRunning,
    NodeStartTimeout,
    PortInUse,
    RabbitMQNotInstalled,
    RunDirUnusable,
    UnknownNode,
)
from rig.cluster._launch import Launch
from rig.cluster._management import ManagementClient
from rig.cluster._spec import ClusterSpec, NodeSpec
from rig.cluster.abc import Cluster, NodeStatus
from rig.cluster.state import ClusterState, NodeState
from rig.ports import port_free

log = logging.getLogger(__name__)

MARKER = ".drill-run-dir"
PLUGINS = "[rabbitmq_management,rabbitmq_prometheus,rabbitmq_consistent_hash_exchange]."
#: What rabbitmq.conf cannot say. A quorum queue's at-least-once dead-letter worker that cannot deliver a
#: message (its target queue has no leader yet, e.g. while the cluster comes back from a full outage)
#: keeps it and tries again only after this many milliseconds: 180,000 by default, so a message parked
#: for a second in a retry tier came back three minutes later, after the demo had ended, and the audit
#: called its order lost. 5 s, like the platform's own publish retries. (3.10 reads the first key,
#: later versions the ``_ms`` one; an unknown key is ignored.)
ADVANCED_CONFIG = (
    "[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 5000},\n"
    "           {dead_letter_worker_publisher_confirm_timeout_ms, 5000}]}].\n"
)
ADMIN_USER = "drill-admin"
# Tries of one rabbitmqctl call made on every running node (alarms): transient CLI failures under load.
CTL_ATTEMPTS = 3


def amqp_handshake(host: str, port: int, timeout: float = 1.0) -> bool:
    """The cheap readiness probe: a node that answers the AMQP 0-9-1 header with a frame is serving."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"AMQP\x00\x00\x09\x01")
            return s.recv(1) == b"\x01"  # frame type 1: method (Connection.Start)
    except OSError:
        return False


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no {path.name})"


#: How long a node outside the majority's cluster gets to rejoin by itself before it is restarted.
STRAGGLER_SETTLE_S = 15.0


class LocalCluster(Cluster):
    """N RabbitMQ nodes started by the project, each with its own loopback address, ports and data.

    ``LocalCluster.attach(run_dir)`` gives a handle on a cluster another process started (the CLI,
    chaos, tests), read from its state file.
    """

    provider = "local"
    owned = True
    runs_here = True

    def __init__(self, spec: ClusterSpec | None = None, *, say: Callable[[str], None] | None = None) -> None:
        self.spec = spec or ClusterSpec()
        #: Where progress lines a user waits on go (building a broker's Debian root): stderr by default.
        self.say: Callable[[str], None] = say or _stderr
        self._state: ClusterState | None = cluster_state.load(self.spec.run_dir)
        self._state_stamp = self._file_stamp()  # the state file as this handle last read or wrote it
        self._popens: dict[int, subprocess.Popen[bytes]] = {}
        # Where each node's current boot starts in its log and stdout files (bytes): a death during
        # boot is explained by that boot's lines only, not by an older crash.
        self._boot_marks: dict[int, tuple[int, int]] = {}
        #: Every death of a VM during boot this handle saw and retried, oldest first.
        self.boot_retries: list[BootRetry] = []
        self._stalls: dict[int, str] = {}  # node -> why the rig killed its stalled boot
        # When each node's current boot was spawned, and when this handle last stopped or killed it on
        # purpose (time.monotonic()): a boot another fault stopped did not crash.
        self._spawned_at: dict[int, float] = {}
        self._stopped_at: dict[int, float] = {}

    # ------------------------------------------------------------------ attach / state
    @classmethod
    def attach(cls, spec: ClusterSpec | None = None) -> LocalCluster:
        """A handle on the cluster recorded in ``spec.run_dir``; its layout is read from the state file."""
        spec = spec or ClusterSpec()
        st = cluster_state.load(spec.run_dir)
        if st is not None and st.port_base is not None:
            spec = spec.model_copy(
                update={
                    "port_base": st.port_base,
                    "address_block": st.address_block,
                    "nodes": len(st.nodes),
                    "broker": st.broker,
                }
            )
        cluster = cls(spec)
        if cluster._state is None:
            raise ClusterNotRunning(
                f"no cluster state in {cluster.spec.run_dir}; start one with `./drill cluster up`"
            )
        if cluster._state.provider != "local":
            raise ClusterError(
                f"the cluster in {cluster.spec.run_dir} is {cluster._state.provider!r}, not local"
            )
        return cluster

    def reload(self) -> None:
        """Read the state file again: another process (the CLI, a heal) may have restarted nodes, and
        their new PIDs are only there."""
        self._state = cluster_state.load(self.spec.run_dir)
        self._state_stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = cluster_state.state_path(self.spec.run_dir).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return (st.st_mtime_ns, st.st_ino)

    def _reload_if_changed(self) -> None:
        """Another process wrote the state file since this handle did (a `drill chaos heal` restarted
        nodes): its PIDs are the true ones. Starting a node from stale PIDs would run a second VM
        under a name already taken, and lose track of the first."""
        stamp = self._file_stamp()
        if stamp is not None and stamp != self._state_stamp:
            log.info("the state file in %s changed under this handle: reading it again", self.spec.run_dir)
            self.reload()

    @property
    def state(self) -> ClusterState:
        if self._state is None:
            raise ClusterNotRunning(f"no cluster in {self.spec.run_dir}; run `./drill cluster up`")
        return self._state

    def _save(self) -> None:
        cluster_state.save(self.spec.run_dir, self.state)
        self._state_stamp = self._file_stamp()

    def _node_state(self, node: int) -> NodeState:
        try:
            return self.state.node(node)
        except KeyError:
            raise UnknownNode(f"no node {node}: this cluster has nodes {self.node_indices}") from None

    def is_running(self) -> bool:
        return self._state is not None and any(procs.alive(p) for p in self._state.owned_pids())

    # ------------------------------------------------------------------ Cluster interface
    @property
    def node_indices(self) -> list[int]:
        if self._state is not None:
            return [n.index for n in self._state.nodes]
        return list(range(1, self.spec.nodes + 1))

    @property
    def admin(self) -> tuple[str, str]:
        return (self.state.admin_user, self.state.admin_password)

    @property
    def amqp_urls(self) -> list[str]:
        user, password = self.admin
        return [f"amqp://{user}:{password}@{n.host}:{n.amqp_port}/" for n in self.state.nodes]

    def management_url(self, node: int) -> str:
        n = self._node_state(node)
        return f"http://{n.host}:{n.mgmt_port}"

    def vm_pids(self) -> dict[int, int | None]:
        return {n: self.beam_pid(n) for n in self.node_indices}

    def beam_pid(self, node: int) -> int | None:
        return self._node_state(node).beam_pid

    @property
    def launch(self) -> Launch:
        """How this rig's programs run: in the Debian root its state names, else from the host's bin dir
        (the spec's broker is resolved, and its root built, by :meth:`_resolve_broker` at start)."""
        run_dir = self.spec.run_dir.resolve()
        if self._state is not None and self._state.broker_root:
            return Launch(Path(self._state.broker_root), versions.DEBIAN_BIN, run_dir)
        return Launch(None, self.spec.rabbitmq_bin, run_dir)

    def _resolve_broker(self) -> versions.Broker:
        """The spec's broker setting made real: the host's package, or a Debian root (built on first use)."""
        broker = versions.resolve(
            self.spec.broker,
            host_codename=versions.host_codename(),
            brokers_dir=self.spec.brokers_dir.resolve(),
            bin_dir=self.spec.rabbitmq_bin,
        )
        if broker.root is not None and broker.codename is not None:
            _roots.ensure_root(
                broker.codename, broker.root.parent, say=self.say, mirror=self.spec.debian_mirror
            )
        return broker

    def broker_version(self) -> str | None:
        """The RabbitMQ version a running node reports (management ``overview``); None when none answers."""
        for n in self.state.nodes:
            if self.node_state(n.index) != "up":
                continue
            try:
                with ManagementClient(self.management_url(n.index), *self.admin, timeout=3.0) as mc:
                    return str(mc.get("overview")["rabbitmq_version"])
            except Exception as exc:  # a node shutting down may refuse: ask the next
                log.debug("overview of node %s failed: %s", n.index, exc)
        return None

    # ------------------------------------------------------------------ preflight
    def launch_of(self, broker: versions.Broker) -> Launch:
        return Launch(broker.root, broker.bin_dir, self.spec.run_dir.resolve())

    def _preflight(self) -> versions.Broker:
        broker = self._resolve_broker()
        launch = self.launch_of(broker)
        server = launch.server_binary()
        if not os.access(server, os.X_OK):
            raise RabbitMQNotInstalled(
                f"rabbitmq-server not found at {server}; install it with `apt-get install -y rabbitmq-server` "
                "(./drill does this when run as root) or point DRILL_RABBITMQ_BIN at its bin directory"
            )
        if shutil.which("epmd") is None and not (self.spec.rabbitmq_bin / "epmd").exists():
            raise RabbitMQNotInstalled(
                "epmd (Erlang) not found; install it with `apt-get install -y erlang-base`"
            )
        existing = cluster_state.load(self.spec.run_dir) if self.spec.run_dir.is_dir() else None
        if existing is not None and any(procs.alive(p) for p in existing.owned_pids()):
            raise ClusterAlreadyRunning(
                f"a cluster is already running from {self.spec.run_dir} "
                f"(PIDs {', '.join(map(str, existing.owned_pids()))}); stop it with `./drill cluster down` "
                "or use another --run-dir and --port-base"
            )
        self._prepare_run_dir()
        taken: list[str] = []
        if not port_free("127.0.0.1", self.spec.epmd_port):
            taken.append(f"127.0.0.1:{self.spec.epmd_port} (epmd)")
        for n in self.spec.all_nodes():
            for label, port in (
                ("amqp", n.amqp_port),
                ("management", n.mgmt_port),
                ("prometheus", n.prometheus_port),
                ("distribution", n.dist_port),
            ):
                if not port_free(n.host, port):
                    taken.append(f"{n.host}:{port} ({label}, node {n.index})")
        if taken:
            raise PortInUse(
                f"port(s) already in use: {'; '.join(taken)}; stop what holds them or pick other ports "
                "with --port-base / DRILL_CLUSTER_PORT_BASE"
            )
        launch.prepare()
        return broker

    def _prepare_run_dir(self) -> None:
        run_dir = self.spec.run_dir
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / ".write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise RunDirUnusable(
                f"cannot use run directory {run_dir}: {exc.strerror or exc}; choose a writable one with "
                "--run-dir or DRILL_CLUSTER_RUN_DIR"
            ) from exc
        marker = run_dir / MARKER
        if (
            any(p.name not in (MARKER, cluster_state.STATE_FILE) for p in run_dir.iterdir())
            and not marker.exists()
        ):
            raise RunDirUnusable(
                f"{run_dir} is not empty and was not made by the drill; refusing to use it (pick an empty "
                "directory with --run-dir)"
            )
        marker.write_text("made by ./drill cluster up; safe to delete when no cluster runs\n")
        # A fresh cluster each time: old node data would keep an old admin password and old queues.
        for n in self.spec.all_nodes():
            shutil.rmtree(n.dir, ignore_errors=True)

    # ------------------------------------------------------------------ files and env
    def _write_node_files(self, n: NodeSpec, password: str, line: versions.BrokerVersion) -> None:
        (n.dir / "log").mkdir(parents=True, exist_ok=True)
        (n.dir / "mnesia").mkdir(parents=True, exist_ok=True)
        peers = "\n".join(
            f"cluster_formation.classic_config.nodes.{p.index} = {p.name}" for p in self.spec.all_nodes()
        )
        conf = f"""\
listeners.tcp.default = {n.host}:{n.amqp_port}
management.tcp.ip = {n.host}
management.tcp.port = {n.mgmt_port}
prometheus.tcp.ip = {n.host}
prometheus.tcp.port = {n.prometheus_port}
log.console = false
log.file.level = info
cluster_name = {self.spec.cluster_name}
cluster_partition_handling = pause_minority
net_ticktime = {self.spec.net_ticktime}
vm_memory_high_watermark.absolute = {self.spec.memory_watermark}
disk_free_limit.absolute = {self.spec.disk_free_limit}
default_user = {ADMIN_USER}
default_pass = {password}
default_user_tags.administrator = true
loopback_users = none
collect_statistics_interval = 1000
cluster_formation.peer_discovery_backend = classic_config
{peers}
cluster_formation.discovery_retry_limit = {line.discovery_retry_limit}
cluster_formation.discovery_retry_interval = {line.discovery_retry_interval_ms}
"""
        (n.dir / "rabbitmq.conf").write_text(conf)
        (n.dir / "rabbitmq.conf").chmod(0o600)
        (n.dir / "advanced.config").write_text(ADVANCED_CONFIG)
        (n.dir / "enabled_plugins").write_text(PLUGINS + "\n")
        (n.dir / "rabbitmq-env.conf").write_text("# intentionally empty: the drill sets the env itself\n")

    def _cookie_home(self) -> Path:
        home = self.spec.run_dir / "home"
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            home.mkdir(parents=True, exist_ok=True)
            cookie.write_text(secrets.token_hex(20))
            cookie.chmod(0o400)
        return home

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        addresses = ",".join(["127.0.0.1"] + [n.host for n in self.spec.all_nodes()])
        env.update(
            HOME=str(self._cookie_home()),
            ERL_EPMD_PORT=str(self.spec.epmd_port),
            ERL_EPMD_ADDRESS=addresses,
            RABBITMQ_USE_LONGNAME="true",
        )
        return env

    def _node_env(self, n: NodeSpec) -> dict[str, str]:
        ip = n.host.replace(".", ",")
        env = self._base_env()
        env.update(
            RABBITMQ_NODENAME=n.name,
            RABBITMQ_NODE_IP_ADDRESS=n.host,
            RABBITMQ_NODE_PORT=str(n.amqp_port),
            RABBITMQ_DIST_PORT=str(n.dist_port),
            RABBITMQ_MNESIA_BASE=str(n.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(n.dir / "log"),
            RABBITMQ_PID_FILE=str(n.dir / "rabbit.pid"),
            RABBITMQ_CONFIG_FILE=str(n.dir / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(n.dir / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(n.dir / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(n.dir / "enabled_plugins"),
            # Bind outgoing distribution connections to the node's own address, so a partition
            # can be cut with iptables by source and destination address.
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
                f"-kernel inet_dist_use_interface {{{ip}}} -kernel inet_dist_connect_options [{{ip,{{{ip}}}}}]"
            ),
        )
        return env

    # ------------------------------------------------------------------ spawning
    def _spawn_epmd(self) -> None:
        epmd = shutil.which("epmd") or str(self.spec.rabbitmq_bin / "epmd")
        env = self._base_env()
        out = open(self.spec.run_dir / "epmd.log", "ab")  # noqa: SIM115 - handed to the child
        with procs.interrupts_deferred():  # a Ctrl-C inside Popen would leave an unrecorded epmd
            proc = subprocess.Popen(
                [epmd, "-address", env["ERL_EPMD_ADDRESS"], "-port", str(self.spec.epmd_port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            out.close()
            self.state.epmd_pid = proc.pid
            self.state.epmd_port = self.spec.epmd_port
            self._save()
        deadline = time.monotonic() + 5
        while not _port_open("127.0.0.1", self.spec.epmd_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"epmd did not start: {_tail(self.spec.run_dir / 'epmd.log')}")
            time.sleep(0.02)

    def _node_log(self, index: int) -> Path:
        n = self.spec.node(index)
        return n.dir / "log" / f"{n.name}.log"

    def _spawn_node(self, index: int) -> None:
        n = self.spec.node(index)
        ns = self._node_state(index)
        self._boot_marks[index] = (_boot.size(self._node_log(index)), _boot.size(n.dir / "stdout.log"))
        self._spawned_at[index] = time.monotonic()
        out = open(n.dir / "stdout.log", "ab")  # noqa: SIM115 - handed to the child
        # Deferred: a Ctrl-C inside Popen (after the fork, before it returns the PID) leaked a node in CI.
        with procs.interrupts_deferred():
            proc = subprocess.Popen(
                self.launch.command("rabbitmq-server"),
                env=self.launch.env(self._node_env(n)),
                cwd=n.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            out.close()
            self._popens[index] = proc
            ns.wrapper_pid, ns.beam_pid, ns.paused = proc.pid, None, False
            self._save()
        ns.beam_pid = procs.find_descendant(proc.pid, "beam.smp", timeout=10)
        self._save()
        if ns.beam_pid is None:
            raise NodeStartTimeout(
                f"node {index}: no Erlang VM (beam.smp) appeared under {proc.pid}\n"
                f"--- {n.dir / 'stdout.log'}\n{_tail(n.dir / 'stdout.log')}"
            )

    # ------------------------------------------------------------------ readiness
    def ctl(self, node: int, *args: str, timeout: float = 30.0, tool: str = "rabbitmqctl") -> str:
        """Run a RabbitMQ CLI tool against one node; every call has a timeout (a partition can hang it)."""
        n = self._node_state(node)
        cmd = self.launch.command(tool, "--longnames", "-n", n.name, *args)
        try:
            res = subprocess.run(
                cmd,
                env=self.launch.env(self._base_env()),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(
                f"{tool} {' '.join(args)} on node {node} timed out after {timeout:.0f} s"
            ) from exc
        if res.returncode != 0:
            raise ClusterError(
                f"{tool} {' '.join(args)} on node {node} failed ({res.returncode}): "
                f"{(res.stderr or res.stdout).strip()[-500:]}"
            )
        return res.stdout

    def running_nodes(self, via: int) -> list[str]:
        out = self.ctl(via, "cluster_status", "--formatter", "json", timeout=15)
        return list(json.loads(out).get("running_nodes", []))

    def _boot(self, index: int) -> None:
        """Spawn a node for the retry loop: a VM that never appears is left to the loop, which reads why
        from the node's files and tries again (rather than failing the whole start at once)."""
        try:
            self._spawn_node(index)
        except NodeStartTimeout as exc:
            log.warning("node %d: %s", index, str(exc).splitlines()[0])

    def boot_crash(self, index: int) -> str:
        """The broker's own reason for the death of the node's current boot, in one line (from its log
        file and its stdout, written since that boot was spawned)."""
        log_at, out_at = self._boot_marks.get(index, (0, 0))
        n = self.spec.node(index)
        for text in (
            _boot.read_since(n.dir / "stdout.log", out_at),
            _boot.read_since(self._node_log(index), log_at),
        ):
            reason = _boot.boot_crash_reason(text)
            if reason:
                return reason
        return "no crash reason in its log or stdout (killed by a signal, or dead before it logged)"

    def _wait_ready(self, indices: list[int], timeout: float) -> None:
        """Wait until every node in ``indices`` serves AMQP and management, then until all form one cluster.

        A node whose VM exits before it served is started again after a pause (1 s, doubling up to
        8 s: :mod:`rig.cluster._boot`), with the broker's reason logged, until ``timeout`` is spent.
        RabbitMQ 3.10 can die during boot while its peers change (the ``{badmap,undefined}`` feature-flag
        sync race; nodes started together after a full stop), and boots fine once they are stable.
        A node that served once and died later was stopped by someone else (another fault): it is not
        started again here, and the wait ends in :class:`NodeStartTimeout` unless it comes back.

        A polling loop of our own rather than tenacity: several nodes boot together, each with its own
        retry state, watched in one loop; tenacity retries one call at a time.
        """
        deadline = time.monotonic() + timeout
        boot = dict.fromkeys(indices, 1)
        pause = dict.fromkeys(indices, _boot.RETRY_FIRST_S)
        respawn_at: dict[int, float] = {}
        served: set[int] = set()
        want = {self._node_state(i).name for i in self.node_indices}
        running: set[str] = set()
        serving_since: dict[int, float] = {}  # every node, since when it answers AMQP without a break
        crashed: dict[int, str] = {}  # node -> the broker's reason of its last boot crash in this wait
        crashes = dict.fromkeys(indices, 0)
        while True:
            now = time.monotonic()
            for n in self.state.nodes:
                if amqp_handshake(n.host, n.amqp_port, timeout=0.3):
                    serving_since.setdefault(n.index, now)
                else:
                    serving_since.pop(n.index, None)
            waiting: list[int] = []  # nodes in ``indices`` not serving yet
            for i in indices:
                ns = self._node_state(i)
                if i not in respawn_at and i not in served and self._stalled(i, serving_since, now):
                    # Killed here so the death below starts it again, with the stall as the reason.
                    procs.send(ns.beam_pid, signal.SIGKILL)
                    procs.wait_gone([p for p in (ns.beam_pid,) if p], timeout=10)
                    self._stalls[i] = (
                        f"stalled in boot, waiting for its peers' tables while they served for "
                        f"{_boot.STALL_S:.0f} s (a partition during its boot: Mnesia never asks again)"
                    )
                if i in respawn_at:
                    waiting.append(i)
                    if now >= respawn_at[i]:
                        del respawn_at[i]
                        boot[i] += 1
                        self._wait_port_free(i)
                        self._boot(i)
                    continue
                if not procs.alive(ns.beam_pid) and i not in served:
                    waiting.append(i)
                    stall = self._stalls.pop(i, None) or self._stopped_during_boot(i)
                    reason = stall or self.boot_crash(i)
                    if stall is None:
                        crashes[i] += 1
                        crashed[i] = reason
                    wait = pause[i]
                    if now + wait > deadline:
                        why = (
                            f"its Erlang VM exited during start-up (boot {boot[i]}; no time left to "
                            f"retry within {timeout:.0f} s): {reason}"
                        )
                        if crashes[i] >= 2:  # it died at every boot: broken, not wedged
                            raise BootCrashLoop(self._failure(i, why), i, reason)
                        raise NodeStartTimeout(self._failure(i, why))
                    self.boot_retries.append(
                        BootRetry(i, boot[i], reason, wait, time.time(), stalled=stall is not None)
                    )
                    log.warning(
                        "node %d: its Erlang VM exited during start-up (boot %d): %s; starting it again in %.0f s",
                        i,
                        boot[i],
                        reason,
                        wait,
                    )
                    procs.kill_group(ns.wrapper_pid)
                    respawn_at[i] = now + wait
                    pause[i] = min(_boot.RETRY_MAX_S, wait * 2)
                    continue
                if amqp_handshake(ns.host, ns.amqp_port) and _port_open(ns.host, ns.mgmt_port):
                    served.add(i)
                else:
                    waiting.append(i)
            if not waiting:
                # Every node answers: now they must be one cluster.
                try:
                    running = set(self.running_nodes(indices[0]))
                except ClusterError:
                    running = set()
                if want <= running:
                    return
            if time.monotonic() > deadline:
                looping = [i for i in waiting if crashes[i] >= 2]
                if looping:
                    # The time ran out while it booted once more: it died at every boot before, so it is
                    # broken, not slow (the same verdict as a death with no time left to retry). This
                    # boot is given up too: the rig's record says down, not a VM left half-booted.
                    i = min(looping)
                    procs.kill_group(self._node_state(i).wrapper_pid)
                    procs.send(self._node_state(i).beam_pid, signal.SIGKILL)
                    raise BootCrashLoop(
                        self._failure(
                            i, f"its Erlang VM exited at {crashes[i]} boots in {timeout:.0f} s: {crashed[i]}"
                        ),
                        i,
                        crashed[i],
                    )
                if waiting:
                    first = min(waiting)
                    raise NodeStartTimeout(self._failure(first, f"not serving AMQP after {timeout:.0f} s"))
                raise NodeStartTimeout(
                    self._failure(
                        indices[0], f"cluster incomplete after {timeout:.0f} s: running {sorted(running)}"
                    )
                )
            time.sleep(0.1 if waiting else 0.3)

    def _stopped_during_boot(self, index: int) -> str | None:
        """Why the node's boot ended, when this handle stopped or killed it on purpose since the boot was
        spawned (another fault running beside the wait: a full outage stopping every node while a killed
        one boots again); None otherwise. Such a death is not a crash: it never makes a crash loop."""
        if self._stopped_at.get(index, -1.0) < self._spawned_at.get(index, float("inf")):
            return None
        return "stopped on purpose while it booted (another fault stopped or killed it)"

    def _stalled(self, index: int, serving_since: dict[int, float], now: float) -> bool:
        """A booting node has waited :data:`_boot.STALL_S` for its peers' Mnesia tables while every peer
        served AMQP all that time: it will not get them. Seen after a partition during its boot: its
        connection attempts were dropped, and Mnesia does not try again when the link is back (a new
        connection does not wake it either); the wait would last 10 x 30 s, then fail the boot."""
        peers = [n.index for n in self.state.nodes if n.index != index]
        if not peers or any(now - serving_since.get(p, now) < _boot.STALL_S for p in peers):
            return False
        ns = self._node_state(index)
        if not procs.alive(ns.beam_pid) or procs.stopped(ns.beam_pid) or index in serving_since:
            return False
        log_at = self._boot_marks.get(index, (0, 0))[0]
        since = _boot.waiting_for_tables_since(_boot.read_since(self._node_log(index), log_at))
        return since is not None and time.time() - since >= _boot.STALL_S

    def _failure(self, index: int, why: str) -> str:
        n = self.spec.node(index)
        logfile = n.dir / "log" / f"{n.name}.log"
        return (
            f"node {index} ({n.name}) {why}\n--- tail of {logfile}\n{_tail(logfile)}\n"
            f"--- tail of {n.dir / 'stdout.log'}\n{_tail(n.dir / 'stdout.log', 10)}"
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start every node and wait until they form one healthy cluster.

        Any failure, Ctrl-C included, stops whatever was started before the error propagates.
        """
        t0 = time.monotonic()
        broker = self._preflight()
        installed = versions.installed_version(self.launch_of(broker).server_binary().parent)
        line = versions.line_of(installed)
        log.info("broker %s: RabbitMQ %s installed (%s rules)", broker.setting, installed, line.name)
        password = secrets.token_urlsafe(18)
        self._state = ClusterState(
            provider="local",
            run_dir=str(self.spec.run_dir),
            cluster_name=self.spec.cluster_name,
            admin_user=ADMIN_USER,
            admin_password=password,
            nodes=[
                NodeState(
                    index=n.index,
                    name=n.name,
                    host=n.host,
                    amqp_port=n.amqp_port,
                    mgmt_port=n.mgmt_port,
                    prometheus_port=n.prometheus_port,
                    dist_port=n.dist_port,
                )
                for n in self.spec.all_nodes()
            ],
            started_at=time.time(),
            port_base=self.spec.port_base,
            address_block=self.spec.address_block,
            broker=broker.setting,
            broker_root=str(broker.root) if broker.root is not None else None,
        )
        try:
            self._save()
            for n in self.spec.all_nodes():
                self._write_node_files(n, password, line)
            self._spawn_epmd()
            for i in self.node_indices:
                self._boot(i)
            self._wait_ready(self.node_indices, self.spec.start_timeout)
        except BaseException:
            log.warning("start failed or interrupted: tearing down what was started")
            self._teardown()
            raise
        log.info("cluster up in %.1f s", time.monotonic() - t0)

    def stop(self) -> None:
        """Stop every process the state file names (also after the CLI that started them crashed)."""
        if self._state is None:
            raise ClusterNotRunning(f"no cluster state in {self.spec.run_dir}: nothing to stop")
        self._teardown()

    def _teardown(self) -> None:
        st = self._state
        if st is None:
            return
        beams = [n.beam_pid for n in st.nodes if n.beam_pid and procs.alive(n.beam_pid)]
        for n in st.nodes:
            procs.send(n.beam_pid, signal.SIGCONT)  # a frozen VM cannot act on SIGTERM
        # All at once: under pause_minority, stopping nodes one by one makes the last one pause.
        for pid in beams:
            procs.send(pid, signal.SIGTERM)
        if not procs.wait_gone(beams, timeout=20):
            log.warning("nodes still alive 20 s after SIGTERM: SIGKILL")
        for n in st.nodes:
            procs.kill_group(n.wrapper_pid)
        procs.send(st.epmd_pid, signal.SIGKILL)
        procs.wait_gone(st.owned_pids(), timeout=10)
        for p in self._popens.values():
            with contextlib.suppress(Exception):
                p.wait(timeout=1)
        still = [p for p in st.owned_pids() if procs.alive(p)]
        if still:
            raise ClusterError(f"processes of the run still alive after SIGKILL: {still}")
        cluster_state.remove(self.spec.run_dir)
        self._state = None

    # ------------------------------------------------------------------ faults and repairs
    def kill(self, node: int) -> None:
        ns = self._node_state(node)
        self._stopped_at[node] = time.monotonic()
        if not procs.alive(ns.beam_pid):
            raise ClusterError(f"node {node} is not running")
        procs.send(ns.beam_pid, signal.SIGKILL)
        procs.wait_gone([p for p in (ns.beam_pid, ns.wrapper_pid) if p], timeout=10)
        ns.paused = False
        self._save()

    def stop_node(self, node: int) -> None:
        ns = self._node_state(node)
        self._stopped_at[node] = time.monotonic()
        procs.send(ns.beam_pid, signal.SIGCONT)
        procs.send(ns.beam_pid, signal.SIGTERM)
        if not procs.wait_gone([p for p in (ns.beam_pid, ns.wrapper_pid) if p], timeout=30):
            procs.kill_group(ns.wrapper_pid)
            procs.send(ns.beam_pid, signal.SIGKILL)
        ns.paused = False
        self._save()

    def stop_nodes(self, nodes: list[int]) -> None:
        """Graceful stop of several nodes at once (one by one, pause_minority would pause the last)."""
        for i in nodes:
            self._stopped_at[i] = time.monotonic()
        beams = [p for p in (self._node_state(i).beam_pid for i in nodes) if p]
        for pid in beams:
            procs.send(pid, signal.SIGCONT)
            procs.send(pid, signal.SIGTERM)
        if not procs.wait_gone(beams, timeout=30):
            log.warning("nodes %s still stopping after 30 s: SIGKILL", nodes)
            for i in nodes:
                procs.kill_group(self._node_state(i).wrapper_pid)
                procs.send(self._node_state(i).beam_pid, signal.SIGKILL)
            if not procs.wait_gone(beams, timeout=15):
                raise ClusterError(f"nodes {nodes} survived SIGKILL: {[p for p in beams if procs.alive(p)]}")
        for i in nodes:
            self._node_state(i).paused = False
        self._save()

    def restart_all(self, timeout: float | None = None) -> None:
        """Every node down at once (SIGKILL), then all started together: the remedy for a wedged cluster
        (a node paused by pause_minority that never resumes, or nodes waiting for each other's tables)."""
        beams = [n.beam_pid for n in self.state.nodes if procs.alive(n.beam_pid)]
        for n in self.state.nodes:
            procs.send(n.beam_pid, signal.SIGCONT)
            procs.kill_group(n.wrapper_pid)
            procs.send(n.beam_pid, signal.SIGKILL)
        if not procs.wait_gone([p for p in beams if p], timeout=15):
            raise ClusterError(f"nodes survived SIGKILL: {[p for p in beams if p and procs.alive(p)]}")
        for n in self.state.nodes:
            n.paused = False
        self._save()
        deadline = time.monotonic() + 10
        while (
            not all(port_free(n.host, n.amqp_port) for n in self.state.nodes) and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        self.start_nodes(self.node_indices, timeout)

    def start_nodes(self, nodes: list[int], timeout: float | None = None) -> None:
        """Start stopped nodes together (a full-cluster recovery needs them all at once)."""
        for i in nodes:
            if procs.alive(self._node_state(i).beam_pid):
                raise ClusterError(f"node {i} is already running")
        for i in nodes:
            self._boot(i)
        self._wait_ready(nodes, timeout or self.spec.start_timeout)

    def _wait_port_free(self, node: int, timeout: float = 10.0) -> None:
        """Sockets of a VM that just died may linger a moment in the kernel."""
        ns = self._node_state(node)
        deadline = time.monotonic() + timeout
        while not port_free(ns.host, ns.amqp_port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def restart(self, node: int) -> None:
        ns = self._node_state(node)
        if procs.alive(ns.beam_pid):
            self.stop_node(node)
        self._wait_port_free(node)
        self.start_nodes([node])

    def pause(self, node: int) -> None:
        ns = self._node_state(node)
        if not procs.send(ns.beam_pid, signal.SIGSTOP):
            raise ClusterError(f"node {node} is not running")
        ns.paused = True
        self._save()

    def resume(self, node: int) -> None:
        ns = self._node_state(node)
        if not procs.send(ns.beam_pid, signal.SIGCONT):
            raise ClusterError(f"node {node} is not running")
        ns.paused = False
        self._save()

    # ------------------------------------------------------------------ observing
    def node_state(self, node: int) -> str:
        ns = self._node_state(node)
        if not procs.alive(ns.beam_pid):
            return "down"
        if procs.stopped(ns.beam_pid):
            return "paused"
        return "up" if amqp_handshake(ns.host, ns.amqp_port, timeout=0.5) else "starting"

    def status(self) -> list[NodeStatus]:
        out = [
            NodeStatus(
                index=n.index,
                name=n.name,
                state=self.node_state(n.index),
                pid=n.beam_pid if procs.alive(n.beam_pid) else None,
                amqp_url=f"amqp://{n.host}:{n.amqp_port}/",
                management_url=self.management_url(n.index),
            )
            for n in self.state.nodes
        ]
        for s in out:
            if s.state != "up":
                continue
            try:
                with ManagementClient(s.management_url, *self.admin, timeout=2.0) as mc:
                    health = {h.name: h for h in mc.nodes()}
                    leaders = mc.quorum_leaders()
            except Exception as exc:  # a node that is shutting down may refuse; try the next
                log.debug("management API of node %s failed: %s", s.index, exc)
                continue
            for t in out:
                h = health.get(t.name)
                if h is not None:
                    t.mem_alarm, t.disk_free_alarm, t.partitions, t.version = (
                        h.mem_alarm,
                        h.disk_free_alarm,
                        h.partitions,
                        h.version,
                    )
                    if t.state == "up" and not h.running:
                        t.state = "starting"
                t.leaders = leaders.get(t.name, [])
            break
        return out

    def queue_leader(self, queue: str, vhost: str = "/") -> int:
        """The node index that holds the leader of a quorum queue."""
        for s in self.status():
            if s.state != "up":
                continue
            with ManagementClient(s.management_url, *self.admin) as mc:
                leader = mc.queue(queue, vhost).get("leader")
            for n in self.state.nodes:
                if n.name == leader:
                    return n.index
            raise ClusterError(f"queue {vhost}/{queue} has no known leader ({leader!r})")
        raise ClusterError("no node is up to ask for the queue leader")

    def set_memory_alarm(self, on: bool) -> None:
        """Raise (watermark 1 byte) or clear (configured watermark) the memory alarm on every running node."""
        value = "1" if on else str(_bytes(self.spec.memory_watermark))
        self._ctl_on_up_nodes("set_vm_memory_high_watermark", "absolute", value)

    def set_disk_alarm(self, on: bool) -> None:
        """Raise (limit far above the free space) or clear the disk-free alarm on every running node."""
        value = "100000GB" if on else self.spec.disk_free_limit
        self._ctl_on_up_nodes("set_disk_free_limit", value)

    def _ctl_on_up_nodes(self, *args: str) -> None:
        """The same CLI call on every running node at once (each costs ~0.5-1 s of Erlang start-up).

        A call is tried up to :data:`CTL_ATTEMPTS` times: on a saturated machine the CLI's own Erlang
        node sometimes fails to reach a node that serves AMQP ("unable to connect", exit 69), seen in
        the monkey drill with the load average at 12 on 2 cores. A node that went down meanwhile (killed
        by another fault) or replaced by a new VM is skipped: what is set here does not outlive its VM.
        (The demo's memory-alarm undo overlapped its kill_node: node 1 was being restarted, the CLI said
        "requires the 'rabbit' app to be running", and the undo failed on a VM that would boot with the
        configured watermark anyway.)"""
        up = [n.index for n in self.state.nodes if self.node_state(n.index) == "up"]
        vm_at_start = {i: self.beam_pid(i) for i in up}

        def replaced(node: int) -> bool:
            self._reload_if_changed()  # a restart by another process writes its new PID there
            return self.node_state(node) == "down" or self.beam_pid(node) != vm_at_start[node]

        def call(node: int) -> str:
            for attempt in range(1, CTL_ATTEMPTS + 1):
                try:
                    return self.ctl(node, *args, timeout=15)
                except ClusterError as exc:
                    if replaced(node):
                        # Killed or restarted meanwhile (another fault): what is set here is runtime
                        # state, and the node starts again from its configuration (the watermark, no
                        # alarm).
                        log.warning("node %d went down or was restarted during %s: skipped", node, args[0])
                        return ""
                    if attempt == CTL_ATTEMPTS:
                        raise
                    log.warning("node %d: %s; trying again", node, str(exc).splitlines()[0])
                    time.sleep(attempt)
            raise AssertionError("unreachable")

        with ThreadPoolExecutor(max_workers=max(1, len(up))) as pool:
            for fut in [pool.submit(call, i) for i in up]:
                fut.result()

    def ensure_healthy(self, timeout: float | None = None) -> list[str]:
        """Mend what tests and faults leave behind (see :meth:`mend`); returns what it did.

        Raises :class:`ClusterError` naming what could not be mended, so a caller never goes on with a
        rig it believes whole.
        """
        res = self.mend(timeout)
        if not res.ok:
            raise ClusterError("could not mend the rig: " + "; ".join(res.unmended))
        return res.done

    def mend(self, timeout: float | None = None) -> MendResult:
        """Bring the rig back whole: every node up and serving, one cluster, no alarm, none frozen.

        Frozen VMs are resumed, dead ones started (boot crashes retried, see :meth:`_wait_ready`); a
        rig that still does not form one cluster within ``timeout`` (default 60 s) is restarted whole
        (a node paused by pause_minority that never resumes, nodes waiting for each other's tables).
        A node whose VM dies at every boot for the whole wait is broken, not wedged: it
        is reported, its peers are left running. Alarms are cleared and seen cleared. What is still
        wrong after that is in ``unmended``, one line per node, with the broker's last reason when a
        boot crashed.
        """
        self._reload_if_changed()
        wait = timeout or min(60.0, self.spec.start_timeout)
        res = MendResult()
        crashes_before = len(self.boot_retries)
        down: list[int] = []
        for n in self.state.nodes:
            st = self.node_state(n.index)
            if st == "paused":
                self.resume(n.index)
                res.done.append(f"resumed node {n.index}")
            elif st == "down":
                down.append(n.index)
        whole = False
        try:
            if down:
                for i in down:
                    procs.kill_group(self._node_state(i).wrapper_pid)
                self.start_nodes(down, wait)
                res.done.append(f"restarted node(s) {down}")
            else:
                res.done.extend(self._rejoin_stragglers())
            self._wait_ready(self.node_indices, wait)
            whole = True
        except BootCrashLoop as exc:
            # Its VM died at every boot for the whole wait: the node is broken (its data, its
            # configuration), not wedged. Restarting its healthy peers would not mend it.
            log.warning("node %d keeps dying during boot: %s", exc.node, exc.reason)
        except NodeStartTimeout as exc:
            crashes = _by_node([r for r in self.boot_retries[crashes_before:] if not r.stalled])
            looping = sorted(n for n, reasons in crashes.items() if len(reasons) >= 2)
            if looping:
                # Timed out in yet another boot of a node that died at the ones before: broken too.
                log.warning("node(s) %s keep dying during boot: their peers are left running", looping)
            else:
                log.warning("cluster wedged (%s): restarting every node together", str(exc).splitlines()[0])
                res.done.append(f"cluster wedged ({str(exc).splitlines()[0]}): restarted every node together")
                try:
                    self.restart_all(timeout)
                    whole = True
                except ClusterError as again:
                    log.warning("restarting every node together failed: %s", str(again).splitlines()[0])
        for node, reasons in _by_node(self.boot_retries[crashes_before:]).items():
            res.done.append(f"node {node}: {len(reasons)} boot crash(es) retried (last: {reasons[-1]})")
        if not whole:
            res.unmended.extend(self._broken_nodes())
            return res
        try:
            res.done.extend(self._clear_alarms())
        except ClusterError as exc:
            res.unmended.append(f"alarms: clearing failed: {str(exc).splitlines()[0]}")
        res.unmended.extend(self._lingering_alarms_and_partitions())
        return res

    def _views(self) -> dict[int, set[str]]:
        """Each up node's view of the running cluster (a node whose CLI call fails is left out)."""
        views: dict[int, set[str]] = {}
        for n in self.state.nodes:
            if self.node_state(n.index) != "up":
                continue
            try:
                views[n.index] = set(self.running_nodes(n.index))
            except ClusterError:
                continue
        return views

    def _rejoin_stragglers(self, settle_s: float = STRAGGLER_SETTLE_S) -> list[str]:
        """Restart the node(s) left outside a majority that agrees on the cluster, once ``settle_s`` has
        not brought them back by themselves.

        Seen here with RabbitMQ 3.10: a node frozen (SIGSTOP) past the peers' node-down detection, then
        thawed, believes it is alone ("running: itself") and never rejoins, while its two peers go on as a
        cluster without it; pause_minority does not pause it. Restarting that one node mends it in
        seconds. Restarting every node together (the remedy for a cluster that agrees on nothing) would
        be a full outage the drill never asked for.
        """
        want = {n.name for n in self.state.nodes}
        deadline = time.monotonic() + settle_s
        while True:
            views = self._views()
            if len(views) == len(self.state.nodes) and all(v >= want for v in views.values()):
                return []
            names = {n.index: n.name for n in self.state.nodes}
            # The majority: the largest group of nodes that see each other running.
            best: set[int] = set()
            for i, view in views.items():
                group = {j for j, other in views.items() if names[j] in view and names[i] in other}
                if len(group) > len(best):
                    best = group
            stragglers = sorted(set(views) - best) if len(best) * 2 > len(self.state.nodes) else []
            if not stragglers or time.monotonic() >= deadline:
                if not stragglers:
                    return []
                break
            time.sleep(1.0)
        log.warning("node(s) %s outside the cluster the others agree on: restarting them", stragglers)
        for i in stragglers:
            self.kill(i)
            self._wait_port_free(i)
        self.start_nodes(stragglers)
        return [f"node(s) {stragglers} were outside the cluster their peers agree on: restarted them"]

    def _broken_nodes(self) -> list[str]:
        """One line per node that is not up, with its last boot crash; or why the up nodes are not one
        cluster."""
        out: list[str] = []
        last = {r.node: r.reason for r in self.boot_retries}
        for n in self.state.nodes:
            st = self.node_state(n.index)
            if st != "up":
                why = f"; last boot crash: {last[n.index]}" if n.index in last else ""
                if st == "down" and n.index not in last:
                    why = f"; {self.boot_crash(n.index)}"
                out.append(f"node {n.index} ({n.name}) is {st}{why}")
        if out:
            return out
        want = {n.name for n in self.state.nodes}
        for n in self.state.nodes:
            try:
                running = set(self.running_nodes(n.index))
            except ClusterError as exc:
                out.append(f"node {n.index} ({n.name}): cluster_status failed: {str(exc).splitlines()[0]}")
                continue
            if want - running:
                out.append(f"node {n.index} ({n.name}) does not see {sorted(want - running)} running")
        return out or ["the nodes did not form one cluster in time"]

    def _clear_alarms(self) -> list[str]:
        alarms = [s for s in self.status() if s.mem_alarm or s.disk_free_alarm]
        if not alarms:
            return []
        self.set_memory_alarm(False)
        self.set_disk_alarm(False)
        return [f"cleared alarms on node(s) {[s.index for s in alarms]}"]

    def _lingering_alarms_and_partitions(self, timeout: float = 15.0) -> list[str]:
        """Alarms and partitions the management API still reports, after up to ``timeout`` seconds
        (its figures lag by a collection interval)."""
        deadline = time.monotonic() + timeout
        while True:
            problems = []
            for s in self.status():
                if s.mem_alarm or s.disk_free_alarm:
                    kinds = [k for k, on in (("memory", s.mem_alarm), ("disk", s.disk_free_alarm)) if on]
                    problems.append(f"node {s.index} ({s.name}): {' and '.join(kinds)} alarm still raised")
                if s.partitions:
                    problems.append(f"node {s.index} ({s.name}) reports a partition with {s.partitions}")
                if s.state != "up":
                    problems.append(f"node {s.index} ({s.name}) is {s.state}")
            if not problems or time.monotonic() > deadline:
                return problems
            time.sleep(0.5)


@dataclass
class MendResult:
    """What :meth:`LocalCluster.mend` did, and what it could not mend (empty when the rig is whole)."""

    done: list[str] = field(default_factory=list)
    unmended: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unmended


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _by_node(retries: list[BootRetry]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for r in retries:
        out.setdefault(r.node, []).append(r.reason)
    return out


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _bytes(size: str) -> int:
    units = {"KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "KB": 1000, "MB": 1000**2, "GB": 1000**3}
    s = size.strip().upper()
    for unit, mult in units.items():
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * mult)
    return int(s)
