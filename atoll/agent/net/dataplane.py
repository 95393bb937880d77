"""The network dataplane of one host: tenant bridges, instance namespaces and veths, and the nftables
rules that isolate them. Level-triggered: every call converges the kernel to the desired state and can
be repeated; ``sync`` also removes whatever carries our prefix but is no longer wanted.

Layout, for an instance with ports:

    host (or the test's host namespace)              instance namespace  <run_dir>/netns/<instance id>
    atb-<net>  bridge, no address  ── atv-<port> ══ veth ══  eth0  10.0.0.2/24, MAC from the controller
                                                             default route via the subnet's gateway

- A bridge per network that has a port on this host, made on first use and removed with the last
  port. Bridges have no IP address: the host is not a member of tenant networks, so networks with the
  same CIDR (different projects) can share the host, and no tenant reaches the host's services. The
  gateway address is answered by a router (a namespace joined to the bridge) once routers exist.
- The instance's namespace is made and kept by the agent, so the address and MAC survive stop/start.
- Traffic between different bridges is never forwarded by the host (nftables, see ``nft``).

All calls are serialised by one lock and run in worker threads (netlink and ``nft`` block). Desired
state is what the last ``sync`` was given plus what ``attach`` was given since, minus what ``release``
removed; ``release`` remembers the instance, so a ``sync`` working from an older list of assignments
cannot bring its namespace back, and an instance attached after that list was read is not removed.

The kernel work on one bridge or instance is in ``wiring`` (with BIG TCP: which GSO size an
instance's NIC gets, and why), the removals, at once or in the background, in ``removal``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from atoll.agent.net import bigtcp, dockercompat, netlink, netns, nft, nftdiff, publish, secrules, wiring
from atoll.agent.net.fastpath import FastPath, LocalPort
from atoll.agent.net.names import BRIDGE, PUBLISH, VETH, alias_id
from atoll.agent.net.nicsizes import NicSizes
from atoll.agent.net.removal import DeferredRemoval
from atoll.agent.net.routers import RouterPlane
from atoll.agent.net.wiring import Bridge
from atoll.agent.net.wiring import NetConfig as NetConfig  # where the agent, tests and tools find it
from atoll.agent.net.wiring import bridge_mac as bridge_mac
from atoll.agent.net.zones import Zones
from atoll.model.instance import InstanceSpec
from atoll.model.network import PortSpec
from atoll.model.publish import PublishedPort
from atoll.model.routing import RouterSpec
from atoll.model.secgroups import HostSecurity

log = logging.getLogger(__name__)


class HostNetwork(DeferredRemoval):
    def __init__(self, config: NetConfig) -> None:
        self.config = config
        self.names = config.names
        self._lock = asyncio.Lock()
        self._attached: dict[str, list[PortSpec]] = {}
        self._released: set[str] = set()
        self._fresh: set[str] = set()
        """Attached since the last sync began: a sync's list of assignments may predate them."""
        self._rules: str | None = None
        """The script last applied, to skip re-applying an unchanged rule set."""
        self._swept = False
        """Whether a sync looked for tables an earlier agent left (once is enough: later ones are ours)."""
        self._routing: list[RouterSpec] = []
        """The routers wanted on this host, as the last ``route`` or ``sync`` gave them."""
        self._routers = RouterPlane(config.names, config.routers_dir or config.netns_dir.with_name("routers"))
        self._security: HostSecurity | None = None
        """The security groups to enforce; None (no controller gave any) filters nothing within bridges."""
        self._published: dict[str, list[PublishedPort]] = {}
        """Published ports by instance, kept like ``_attached``."""
        self._pub = publish.Addresses(config.publish_pool)
        self._teardowns: dict[str, asyncio.Task[None]] = {}
        """Deferred removals under way, by instance (see ``release``)."""
        self._idle: dict[str, Bridge] = {}
        """Bridges whose last port a deferred removal took, kept for ``LINGER`` seconds (see ``release``)."""
        self._expiry: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()
        self._overlaid: set[str] = set()
        """Networks with ports on other hosts (a VXLAN device on their bridge), as ``set_overlaid`` says."""
        self._nics = NicSizes(self.netns_path)
        """The NICs whose BIG TCP size is known (an agent started again knows none of its predecessor's)."""
        self._zones = Zones()
        """The conntrack zone of each of our bridges (``zones``)."""
        self.fast = FastPath(config.fast_path, zone_of=self._zone_of)
        """Established flows past the bridges (``fastpath``); ``OverlayPlane`` adds the VXLAN side."""

    def nic_size(self, network_id: str) -> int:
        """BIG TCP on an instance's NIC only while its bridge's other ports are instance veths: no VXLAN
        device (peers on other hosts), no router leg (see ``wiring``)."""
        if network_id in self._overlaid or network_id in self._routed():
            return bigtcp.LEGACY
        return self.config.gso_size

    def _routed(self) -> set[str]:
        return {leg.network_id for router in self._routing for leg in router.legs}

    async def set_overlaid(self, network_ids: Iterable[str]) -> None:
        """The networks that have ports on other hosts: called before their VXLAN devices are made, so
        their instances' NICs go back to the legacy GSO size first (and up again when the last peer
        went). Open connections follow: checked on 6.18, a running stream sends no packet above 64 KiB
        half a second after its NIC was lowered."""
        network_ids = set(network_ids)
        if network_ids == self._overlaid and not self._nics.pending(self._attached):
            return  # the usual case: nothing changed since the last refresh
        async with self._lock:
            before = {n: self.nic_size(n) for n in self.local_networks()}
            self._overlaid = network_ids
            # Now that the peers are known, also the NICs this agent did not size (``nicsizes``).
            await asyncio.to_thread(self._fit_nics, before, unknown=True)

    def _fit_nics(self, before: Mapping[str, int], *, unknown: bool = False) -> None:
        """Re-size the NICs of the networks whose ``nic_size`` changed since ``before`` (with
        ``unknown``, also those whose size this agent does not know)."""
        self._nics.fit(dict(self._attached), self.nic_size, before, unknown=unknown)

    def _zone_of(self, network_id: str) -> int | None:
        return self._zones.get(self.names.bridge(network_id))

    def router_path(self, router_id: str) -> Path:
        return self._routers.path(router_id)

    def netns_path(self, instance_id: str) -> Path:
        return self.config.netns_dir / instance_id

    # -- the agent's calls ---------------------------------------------------------------------------

    async def attach(self, spec: InstanceSpec, *, security: HostSecurity | None = None) -> None:
        """Wire an instance's namespace and ports. Idempotent; on failure nothing of it is left.
        ``security``, if given, is the host's new policy, enforced from now on: its rules are loaded
        with the instance's in one rule-set load rather than two."""
        if not spec.ports and not spec.published:
            if security is not None:
                await self.set_security(security)
            return
        async with self._lock:
            if security is not None:
                self._security = security
            self._released.discard(spec.id)
            self._attached[spec.id] = list(spec.ports)
            self._published[spec.id] = list(spec.published)
            self._fresh.add(spec.id)
            try:
                await asyncio.to_thread(self._in_host, lambda: self._wire({spec.id: spec.ports}))
            except BaseException:
                self._attached.pop(spec.id, None)
                self._published.pop(spec.id, None)
                await asyncio.to_thread(self._in_host, lambda: self._unwire(spec.id, spec.ports))
                raise

    def local_networks(self) -> set[str]:
        """The networks with a port of an instance on this host (so their bridges are here)."""
        return {p.network_id for ports in self._attached.values() for p in ports}

    async def replug(self, spec: InstanceSpec) -> None:
        """Hot-plug: converge an instance that exists here to exactly ``spec.ports``: wire the new ones
        (in its current namespace, so a running instance sees the NIC appear), remove the veths of
        ports it no longer has, and keep the default route on the first NIC with a gateway. With no
        ports and nothing published left, the namespace stays until the next ``sync`` drops it (the
        instance's processes keep theirs). Idempotent."""
        async with self._lock:
            old = self._attached.get(spec.id, [])
            keep = {p.id for p in spec.ports}
            gone = [p for p in old if p.id not in keep]
            if spec.ports or spec.published:
                self._released.discard(spec.id)
                self._attached[spec.id] = list(spec.ports)
                self._published[spec.id] = list(spec.published)
                self._fresh.add(spec.id)
            else:
                self._attached.pop(spec.id, None)
                self._published.pop(spec.id, None)
            await asyncio.to_thread(self._in_host, lambda: self._replug(spec.id, list(spec.ports), gone))

    def _replug(self, instance_id: str, ports: list[PortSpec], gone: list[PortSpec]) -> None:
        self._sync_fast(self._attached)  # the fast path forgets the gone ports before their veths go
        with netlink.netlink() as ipr:
            for port in gone:
                netlink.delete(ipr, self.names.veth(port.id), owner=port.id)
        if ports:
            self._wire({instance_id: ports})
            primary = next((p for p in ports if p.gateway), None)
            if primary is not None:
                configure = wiring.configure_inside(primary, default_route=True)
                netns.run_in(self.netns_path(instance_id), configure)
        wanted = self._desired_bridges(self._attached)
        with netlink.netlink() as ipr:
            for port in gone:
                name = self.names.bridge(port.network_id)
                if name not in wanted:
                    netlink.delete(ipr, name, owner=port.network_id)
        self._apply_rules(wanted, self._attached)

    async def route(self, routers: Iterable[RouterSpec]) -> None:
        """Converge the routers of this host (and the bridges they need) to ``routers``; remove the rest."""
        async with self._lock:
            before = {n: self.nic_size(n) for n in self.local_networks()}
            self._routing = list(routers)
            await asyncio.to_thread(self._fit_nics, before)
            await asyncio.to_thread(self._in_host, self._wire_routers)

    async def sync(self, specs: Iterable[InstanceSpec], routers: Iterable[RouterSpec] | None = None) -> None:
        """Converge the whole host to ``specs`` (every instance assigned here) and, when given, to
        ``routers``, and remove the rest."""
        specs = list(specs)
        given = {s.id: list(s.ports) for s in specs if s.ports or s.published}
        published = {s.id: list(s.published) for s in specs if s.published}
        async with self._lock:
            if routers is not None:
                before = {n: self.nic_size(n) for n in self.local_networks()}
                self._routing = list(routers)
                await asyncio.to_thread(self._fit_nics, before)
            self._released &= set(given)  # a tombstone is needed only while stale lists name it
            for instance_id in self._released:
                given.pop(instance_id, None)
                published.pop(instance_id, None)
            fresh, self._fresh = self._fresh, set()
            given.update({i: self._attached[i] for i in fresh if i in self._attached})
            published.update({i: self._published[i] for i in fresh if self._published.get(i)})
            self._attached = given
            self._published = published
            desired = dict(given)
            await asyncio.to_thread(self._in_host, lambda: self._converge(desired))

    async def set_security(self, policy: HostSecurity) -> None:
        """Enforce these security groups from now on (at once, in one transaction)."""
        async with self._lock:
            self._security = policy
            if self._attached:
                desired = dict(self._attached)
                await asyncio.to_thread(
                    self._in_host, lambda: self._apply_rules(self._desired_bridges(desired), desired)
                )

    # -- in the host namespace (worker threads) -------------------------------------------------------

    def _in_host(self, fn: Callable[[], None]) -> None:
        netns.run_in(self.config.host_netns, fn)

    def _desired_bridges(self, desired: Mapping[str, list[PortSpec]]) -> dict[str, Bridge]:
        bridges = {
            self.names.bridge(p.network_id): Bridge(p.network_id, p.mtu)
            for ports in desired.values()
            for p in ports
        }
        for name, idle in self._idle.items():
            bridges.setdefault(name, idle)
        for router in self._routing:
            for leg in router.legs:
                name = self.names.bridge(leg.network_id)
                if name not in bridges or leg.uplink:
                    bridges[name] = Bridge(leg.network_id, leg.mtu, leg.uplink)
        return bridges

    def _wire_routers(self) -> None:
        self._wire({})
        with netlink.netlink() as ipr:
            self._routers.converge(ipr, self._routing, each_apart=True)
            wanted = self._desired_bridges(self._attached)
            for name in netlink.links(ipr):
                if self.names.kind_of(name) == BRIDGE and name not in wanted:
                    netlink.delete(ipr, name)
        self._apply_rules(self._desired_bridges(self._attached), self._attached)

    def _wire(self, instances: Mapping[str, list[PortSpec]], *, each_apart: bool = False) -> None:
        """Bridges (and rules) first, so traffic flows the moment a veth joins its bridge. With
        ``each_apart``, one instance's failure is logged and does not keep the others from converging."""
        every = {**self._attached, **instances}
        bridges = self._desired_bridges(every)
        with netlink.netlink() as ipr:
            # The bridges by name, not a dump of every link: the host may have thousands of veths.
            have = {name: found for name in bridges if (found := netlink.link(ipr, name)) is not None}
            for name, port in bridges.items():
                wiring.ensure_bridge(ipr, have, name, port)
            self._pub.scan(ipr, self.names)
            for instance_id in every:
                if self._published.get(instance_id):
                    self._pub.assign(instance_id)
            self._apply_rules(bridges, every)
            for instance_id, ports in instances.items():
                try:
                    self._wire_instance(ipr, instance_id, ports)
                except Exception:
                    if not each_apart:
                        raise
                    log.exception("could not wire the network of instance %s", instance_id)
            self._sync_fast(every)

    def _wire_instance(self, ipr: netlink.Netlink, instance_id: str, ports: list[PortSpec]) -> None:
        path = self.netns_path(instance_id)
        if not netns.is_netns(path):
            netns.create(path)
        published = self._published.get(instance_id)
        host_end = self._pub.get(instance_id)
        if published and host_end is not None:
            if netlink.link(ipr, self.names.publish(instance_id)) is None:
                publish.check_free(published)  # first wiring only: later, our own DNAT holds the port
            publish.wire(ipr, self.names, instance_id, path, host_end)
            if self.config.ip_forward:
                publish.enable_ip_forward()
        made = wiring.wire_ports(
            ipr,
            self.names,
            instance_id,
            path,
            ports,
            gso_size=self.config.gso_size,
            nic_size=self.nic_size,
        )
        self._nics.made(made)

    def _unwire(self, instance_id: str, ports: list[PortSpec]) -> None:
        self._sync_fast(self._attached)  # the fast path forgets the ports before their veths go
        with netlink.netlink() as ipr:
            for port in ports:
                netlink.delete(ipr, self.names.veth(port.id), owner=port.id)
            netlink.delete(ipr, self.names.publish(instance_id), owner=instance_id)
            self._pub.forget(instance_id)
            netns.remove(self.netns_path(instance_id))
            wanted = self._desired_bridges(self._attached)
            for port in ports:
                name = self.names.bridge(port.network_id)
                if name not in wanted:
                    netlink.delete(ipr, name, owner=port.network_id)
            self._apply_rules(wanted, self._attached)

    def _converge(self, desired: Mapping[str, list[PortSpec]]) -> None:
        if self._rules is not None and not self._tables_present():
            self._rules = None  # someone removed our tables (a ruleset flush): write them again
        self._wire(desired, each_apart=True)
        with netlink.netlink() as ipr:
            self._routers.converge(ipr, self._routing, each_apart=True)
        wanted_veths = {self.names.veth(p.id) for ports in desired.values() for p in ports}
        wanted_bridges = self._desired_bridges(desired)
        wanted_pubs = {self.names.publish(i) for i in desired if self._published.get(i)}
        kinds = ((VETH, wanted_veths), (PUBLISH, wanted_pubs), (BRIDGE, set(wanted_bridges)))
        with netlink.netlink() as ipr:
            links = netlink.links(ipr)
            for kind, wanted in kinds:
                for name in sorted(links):
                    if self.names.kind_of(name) == kind and name not in wanted:
                        log.info("removing %s: no longer wanted on this host", name)
                        netlink.delete(ipr, name)
                        if kind == PUBLISH:
                            self._pub.forget(alias_id(links[name].alias))
        if self.config.netns_dir.is_dir():
            for entry in self.config.netns_dir.iterdir():
                if entry.name not in desired:
                    log.info("removing the network namespace of %s: no longer assigned here", entry.name)
                    netns.remove(entry)
        if self._rules is not None:
            dockercompat.ensure(self.names)  # dockerd may have started (or restarted) since
        if not wanted_bridges and not wanted_pubs and not self._swept:
            self._swept = True
            if self._tables_present(any_of=True):
                nft.apply(nft.render_delete(self.names))  # left by an earlier run of the agent
                dockercompat.remove(self.names)

    def _sync_fast(self, desired: Mapping[str, list[PortSpec]]) -> None:
        """The fast path's ports: exactly those of ``desired`` whose veths exist."""
        ports = [
            LocalPort(p.network_id, p.mac, p.ip, self.names.veth(p.id)) for ps in desired.values() for p in ps
        ]
        self.fast.set_local(ports)

    def _tables_present(self, *, any_of: bool = False) -> bool:
        present = nft.tables()
        families = ["inet", "arp"]
        if any_of or (self._rules is not None and f"table bridge {self.names.table} {{" in self._rules):
            families.append("bridge")  # security groups' anti-spoofing
        ours = [(family, self.names.table) in present for family in families]
        return any(ours) if any_of else all(ours)

    def _apply_rules(self, bridges: Mapping[str, Bridge], desired: Mapping[str, list[PortSpec]]) -> None:
        """Our tables for exactly these bridges, the ports of ``desired`` and the published ports of its
        instances; none at all without bridges and published ports."""
        targets = self._pub.targets({i: self._published.get(i, []) for i in desired})
        if not self._zones.adopted:
            self._zones.adopt(nft.zones(self.names))  # an earlier agent's: its flows stay in their zones
        zones = self._zones.assign(bridges)
        if not bridges and not targets:
            if self._rules is not None:
                nft.apply(nft.render_delete(self.names))
                dockercompat.remove(self.names)
            self._rules = None
            return
        security = None
        if self._security is not None:
            ports = {p.id: p for ports in desired.values() for p in ports}
            security = secrules.render(self.names, self._security, ports)
        script = nft.render(self.names, zones, security=security, published=targets)
        if script != self._rules:
            nftdiff.apply(self._rules, script)  # the change alone, when it can be written as one
            if self._rules is None:
                dockercompat.ensure(self.names)
            self._rules = script
