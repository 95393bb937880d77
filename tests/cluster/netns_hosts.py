"""A cluster whose hosts are network namespaces: ``atoll serve`` in the root namespace, and each agent
(``atoll join``, then ``atoll agent``) started with ``nsenter --net`` inside a namespace of its own, so
every host has its own links, bridges, VXLAN devices and nftables tables, as separate machines would.

The underlay is a bridge in a test-made "fabric" namespace. Each host has a veth leg ``underlay`` on it
with an address of a private /24, and so does the controller: a veth whose root end carries the
subnet's ``.1``, where the cluster listener is bound. Only the root namespace gets the /24 (a connected
route to the hosts); no host has a default route, so nothing the hosts send can leave through the
machine's uplink. The /24 is picked per run from 172.31.0.0/16 (skipping any already on the machine),
so parallel runs do not collide.

Everything carries the run's prefix: namespaces ``RUN_PREFIX-...``, the root veth ``NET_PREFIX-u...``.
Teardown removes the instances through the API, stops the processes, checks that no host namespace
kept a link or nftables table of its dataplane, then deletes the namespaces (and so every link in them).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from atoll.schemas import InstanceCreate
from tests.cluster.procs import AgentProc, MultiHost
from tests.e2e.cloud import ATOLL, CGROUP_ROOT, Cloud
from tests.prefix import NET_PREFIX, RUN_PREFIX


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


def _free_subnet() -> str:
    """A /24 of 172.31.0.0/16 not on any interface of the machine, starting from one the run picks."""
    used = _ip("-4", "-o", "addr", "show").stdout
    start = int(hashlib.sha256(RUN_PREFIX.encode()).hexdigest(), 16) % 250
    for i in range(250):
        third = (start + i) % 250 + 1
        if f" 172.31.{third}." not in used:
            return f"172.31.{third}"
    raise RuntimeError("no free /24 in 172.31.0.0/16")


@dataclass
class NetnsAgent(AgentProc):
    netns: str = ""
    address: str = ""

    @property
    def listen(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A command inside this host's network namespace (and only that: same mounts, same cgroups)."""
        return subprocess.run(
            ["nsenter", f"--net={self.netns_path}", *args], capture_output=True, text=True, timeout=timeout
        )

    def leftovers(self) -> list[str]:
        links = self.run("ip", "-o", "link", "show").stdout.splitlines()
        left = [
            f"link {line.split(': ')[1].split('@')[0]}"
            for line in links
            if line.split(": ")[1].startswith(self.host.net_prefix)
        ]
        tables = self.run("nft", "list", "tables").stdout.splitlines()
        left += [f"nft {t}" for t in tables if self.host.nft_table in t]
        return left


@dataclass
class NetnsCluster(MultiHost):
    subnet: str = field(default_factory=_free_subnet)
    fabric: str = f"{RUN_PREFIX}-fab"
    root_leg: str = f"{NET_PREFIX}-uc"
    agents: list[NetnsAgent] = field(default_factory=list)  # type: ignore[assignment]

    @property
    def controller_address(self) -> str:
        return f"{self.subnet}.1"

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "ATOLL_CLUSTER_HOST": self.controller_address}

    def make_fabric(self) -> None:
        _ip("netns", "add", self.fabric)
        self._in_fabric("link", "set", "lo", "up")
        self._in_fabric("link", "add", "name", "fabric", "type", "bridge")
        self._in_fabric("link", "set", "fabric", "up")
        _ip("link", "add", "name", self.root_leg, "type", "veth", "peer", "name", "ctl", "netns", self.fabric)
        _ip("addr", "add", f"{self.controller_address}/24", "dev", self.root_leg)
        _ip("link", "set", self.root_leg, "up")
        self._in_fabric("link", "set", "ctl", "master", "fabric", "up")

    def _in_fabric(self, *args: str) -> None:
        _ip("-n", self.fabric, *args)

    def start_controller(self) -> None:
        if not Path(f"/run/netns/{self.fabric}").exists():
            self.make_fabric()
        super().start_controller()

    def add_agent(self, name: str) -> NetnsAgent:  # type: ignore[override]
        index = len(self.agents) + 1
        host_base = self.base / name
        host_base.mkdir()
        agent = NetnsAgent(
            name=name,
            host=Cloud(base=host_base),
            netns=f"{RUN_PREFIX}-h{index}",
            address=f"{self.subnet}.{10 + index}",
        )
        agent.host.tmp.mkdir()
        _ip("netns", "add", agent.netns)
        _ip("-n", agent.netns, "link", "set", "lo", "up")
        self._in_fabric(
            "link",
            "add",
            "name",
            f"h{index}",
            "type",
            "veth",
            "peer",
            "name",
            "underlay",
            "netns",
            agent.netns,
        )
        self._in_fabric("link", "set", f"h{index}", "master", "fabric", "up")
        _ip("-n", agent.netns, "addr", "add", f"{agent.address}/24", "dev", "underlay")
        _ip("-n", agent.netns, "link", "set", "underlay", "up")
        self.agents.append(agent)
        self._join(agent)
        return agent

    def _agent_command(self, agent: AgentProc, *args: str) -> list[str]:
        assert isinstance(agent, NetnsAgent)
        return ["nsenter", f"--net={agent.netns_path}", ATOLL, *args]

    def _agent_env(self, agent: AgentProc) -> dict[str, str]:
        assert isinstance(agent, NetnsAgent)
        return {**agent.env(self.env), "ATOLL_UNDERLAY_IP": agent.address}

    def settle_network(self, timeout: float = 10) -> None:
        """Give the agents the moment they take to delete removed instances' links, namespaces and
        idle bridges in the background (atoll/agent/net/dataplane.py) before looking for leftovers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(agent.leftovers() for agent in self.agents):
            time.sleep(0.1)

    def teardown(self) -> None:
        self.settle_network()
        self._stop_all()
        for agent in self.agents:
            _kill_containers(agent)
        left: list[str] = []
        for agent in self.agents:
            left += [f"{agent.name}: {x}" for x in agent.leftovers()]
            _ip("netns", "del", agent.netns, check=False)
        _ip("netns", "del", self.fabric, check=False)
        _ip("link", "del", self.root_leg, check=False)  # gone with its peer already, normally
        for agent in self.agents:
            agent.host.teardown()
        assert not left, f"the hosts' dataplanes left these behind: {left}"


def _kill_containers(agent: NetnsAgent) -> None:
    """Containers outlive their agent by design: after a test that failed half-way (or killed an agent
    on purpose), kill what still runs in the host's cgroups and unmount its root filesystems, so the
    cloud's own teardown can remove the rest."""
    for hierarchy in CGROUP_ROOT.iterdir():
        parent = hierarchy / agent.host.cgroup_parent
        for procs in parent.glob("*/cgroup.procs") if parent.is_dir() else []:
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
    # A killed process leaves its cgroup only once it is reaped: wait, so the cloud's rmdir succeeds.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        procs.read_text().strip()
        for hierarchy in CGROUP_ROOT.iterdir()
        for procs in (hierarchy / agent.host.cgroup_parent).glob("*/cgroup.procs")
    ):
        time.sleep(0.1)
    base = str(agent.host.base)
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[1].startswith(base)]
    for mount in reversed(mounts):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def create_on(c: NetnsCluster, agent: NetnsAgent, request: InstanceCreate, start: bool = True) -> str:
    api = c.api()
    others = [a for a in c.agents if a is not agent]
    for other in others:
        api.drain_host(other.host_id)
    try:
        inst = api.create_instance(request)
    finally:
        for other in others:
            api.undrain_host(other.host_id)
    assert inst.host == agent.host_id
    if start:
        api.start_instance(inst.id)
    return inst.id


def reaches(c: NetnsCluster, src: str, target: str) -> bool:
    return c.cli("exec", src, "ping", "-c", "1", "-W", "2", target).returncode == 0


def runc_ids(agent: NetnsAgent) -> str:
    """``runc list`` (or crun's) on the host: each runtime keeps its state under ``run/runtime/<name>``."""
    roots = agent.host.base / "run" / "runtime"
    out = [
        subprocess.run([d.name, "--root", str(d), "list", "-q"], capture_output=True, text=True).stdout
        for d in (sorted(roots.iterdir()) if roots.is_dir() else [])
    ]
    return "".join(out)
