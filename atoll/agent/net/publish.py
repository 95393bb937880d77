"""Published ports (Docker's ``-p``): the path from a host port to a port of an instance.

The host has no route into tenant networks (two projects may use the same CIDR on one host, see
docs/networking.md), so publishing does not go through them. Each instance that publishes gets one
more veth, of its own:

    host namespace                                  instance namespace
    <prefix>p-<instance8>  169.254.240.0/31  ══════  pub0  169.254.240.1/31   (no default route)

The pair's addresses are a /31 from a per-host pool (``ATOLL_PUBLISH_CIDR``), unique on the host,
whatever the tenant networks use. nftables (see ``nft``) then does the rest in the kernel, so it keeps
working while the agent is down:

- ``nat`` prerouting and output: a packet to one of the host's own addresses (``fib daddr type
  local``; or the given host IP) and a published port is DNATed to the instance end of its veth;
  this covers other machines and namespaces (prerouting) and the host's own processes, also through
  127.0.0.1 (output; ``route_localnet`` on the veth lets a loopback source leave through it);
- ``nat`` postrouting: such a packet is masqueraded to the host end's address, so the instance's reply
  comes back through the same veth whatever its default route (the instance sees the host as peer,
  as with Docker's userland proxy);
- ``filter``: only DNATed connections may enter the veth; from the instance only their replies come
  back, and only from its own address (a strict reverse-path check: no instance answers for another).
  The instance cannot reach the host or anything else through it. Security groups do not apply to
  this path (Docker users expect ``-p`` to just work); they guard the tenant NICs.

Forwarding: the host end has ``forwarding`` on (replies are forwarded from it); for traffic arriving
on the host's other interfaces, the agent turns ``net.ipv4.ip_forward`` on as Docker does, unless told
not to (``ATOLL_IP_FORWARD=0``; then only interfaces with ``forwarding`` on can reach published ports).

The addresses are kept in the kernel only: a restarted agent reads them back from its veths.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from atoll.agent.net import netlink, netns
from atoll.agent.net.names import PUBLISH, Names, alias_id, publish_alias
from atoll.model.errors import Conflict, RuntimeFailure
from atoll.model.publish import PublishedPort

log = logging.getLogger(__name__)

DEFAULT_POOL = "169.254.240.0/20"
"""Link-local, so never routed off the host; away from 169.254.169.254 (cloud metadata services)."""
DEFAULT_NETWORK = IPv4Network(DEFAULT_POOL)
INSIDE = "pub0"
MTU = 1500


@dataclass(frozen=True)
class Target:
    """Where one instance's published ports go: the instance end of its publishing veth."""

    instance_id: str
    address: str
    ports: tuple[PublishedPort, ...]


class Addresses:
    """The /31 of each publishing veth on this host: host end even, instance end odd."""

    def __init__(self, pool: IPv4Network) -> None:
        if pool.prefixlen > 30:
            raise RuntimeFailure(f"publish pool {pool}: needs at least a /30")
        self.pool = pool
        self._by_instance: dict[str, IPv4Address] = {}
        self._scanned = False

    def scan(self, ipr: netlink.Netlink, names: Names) -> None:
        """Learn the pairs of the veths already there (made by an earlier run of the agent). Once."""
        if self._scanned:
            return
        for link in netlink.links(ipr).values():
            if names.kind_of(link.name) != PUBLISH:
                continue
            for msg in ipr.get_addr(index=link.index, family=2):
                address = IPv4Address(msg.get_attr("IFA_ADDRESS"))
                if address in self.pool:
                    self._by_instance[alias_id(link.alias)] = address
        self._scanned = True

    def get(self, instance_id: str) -> IPv4Address | None:
        return self._by_instance.get(instance_id)

    def assign(self, instance_id: str) -> IPv4Address:
        """The host end of the instance's pair: the one it has, or the lowest free one."""
        have = self._by_instance.get(instance_id)
        if have is not None:
            return have
        used = set(self._by_instance.values())
        for offset in range(0, self.pool.num_addresses, 2):
            candidate = self.pool.network_address + offset
            if candidate not in used:
                self._by_instance[instance_id] = candidate
                return candidate
        raise RuntimeFailure(f"publish pool {self.pool} is exhausted on this host")

    def forget(self, instance_id: str) -> None:
        self._by_instance.pop(instance_id, None)

    def targets(self, published: Mapping[str, list[PublishedPort]]) -> list[Target]:
        out = []
        for instance_id in sorted(published):
            host_end = self._by_instance.get(instance_id)
            if host_end is not None and published[instance_id]:
                out.append(Target(instance_id, str(host_end + 1), tuple(published[instance_id])))
        return out


TCP_LISTEN = "0A"
"""The state column of a listening socket in /proc/net/tcp."""


def _listeners(protocol: str) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket, or every bound UDP socket, of the calling
    thread's network namespace; IPv6 wildcard sockets (which also take IPv4) count as "0.0.0.0"."""
    out = set()
    for version in ("", "6"):
        path = Path(f"/proc/thread-self/net/{protocol}{version}")  # this thread's namespace
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if protocol == "tcp" and state != TCP_LISTEN:
                continue  # a connection that merely uses the port as its source port takes no traffic
            address, port = local.split(":")
            if version:
                if int(address, 16) != 0:
                    continue  # a specific IPv6 address takes no IPv4 traffic
                ip = "0.0.0.0"
            else:
                ip = str(IPv4Address(int.from_bytes(bytes.fromhex(address), "little")))
            out.add((ip, int(port, 16)))
    return out


def check_free(ports: Iterable[PublishedPort]) -> None:
    """Refuse host ports that a process of this host (namespace) listens on: their traffic would go to
    the instance instead. Call in the host namespace (a worker thread that joined it)."""
    found: dict[str, set[tuple[str, int]]] = {}
    for port in ports:
        listening = found.setdefault(port.protocol, _listeners(port.protocol))
        for ip, number in listening:
            if number == port.host_port and (ip == "0.0.0.0" or not port.host_ip or ip == port.host_ip):
                raise Conflict(
                    f"publish: host port {port.host_port}/{port.protocol} is already in use on this host"
                )


def wire(ipr: netlink.Netlink, names: Names, instance_id: str, path: Path, host_end: IPv4Address) -> None:
    """Make (or check) the instance's publishing veth with the pair at ``host_end``. Idempotent."""
    name = names.publish(instance_id)
    link = netlink.link(ipr, name)
    if link is not None and alias_id(link.alias) != instance_id:
        raise RuntimeFailure(
            f"a link named {name} exists and is not the publishing veth of {instance_id[:12]}"
        )
    if link is None:
        link = netlink.add_veth(
            ipr,
            name,
            peer=INSIDE,
            peer_netns=path,
            peer_mac=_mac(host_end + 1),
            mtu=MTU,
            alias=publish_alias(instance_id),
        )
        netns.run_in(path, _configure_inside(host_end + 1))
    for key, value in (("route_localnet", "1"), ("forwarding", "1"), ("rp_filter", "0")):
        netlink.write_sysctl(f"net/ipv4/conf/{name}/{key}", value)
    netlink.configure_nic(
        ipr, name, address=str(host_end), prefix_len=31, mtu=MTU, gateway="", default_route=False
    )


def _mac(address: IPv4Address) -> str:
    """Locally administered, from the address: unique on the host like the address."""
    return "02:a8:" + ":".join(f"{b:02x}" for b in address.packed)


def _configure_inside(address: IPv4Address) -> Callable[[], None]:
    def configure() -> None:
        with netlink.netlink() as ipr:
            netlink.configure_nic(
                ipr, INSIDE, address=str(address), prefix_len=31, mtu=MTU, gateway="", default_route=False
            )

    return configure


def enable_ip_forward() -> None:
    """Docker's default: the host forwards, so published ports are reachable from its interfaces. Our
    ``forward`` chain still drops everything to and from tenant networks."""
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "1":
        log.info("turning on net.ipv4.ip_forward for published ports")
        netlink.write_sysctl("net/ipv4/ip_forward", "1")
