"""Network rows to wire objects, and stored subnets back to IPAM plans."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from atoll.model.network import PortSpec
from atoll.schemas import AllocationPool, FixedIp, InstanceNic, Network, Port, Subnet
from atoll.services.ipam import Pool, SubnetPlan
from atoll.store.models import IpAllocationRow, NetworkRow, PortRow, SubnetRow


def subnet_plan(row: SubnetRow) -> SubnetPlan:
    """The plan a stored subnet was validated into (it is not validated again)."""
    return SubnetPlan(
        cidr=IPv4Network(row.cidr),
        gateway=IPv4Address(row.gateway) if row.gateway else None,
        pools=tuple(Pool(IPv4Address(a), IPv4Address(b)) for a, b in row.allocation_pools),
        dns=tuple(IPv4Address(d) for d in row.dns_nameservers),
    )


def subnet_view(row: SubnetRow) -> Subnet:
    return Subnet(
        id=row.id,
        name=row.name,
        project=row.project,
        network=row.network_id,
        cidr=row.cidr,
        ip_version=row.ip_version,
        gateway=row.gateway or None,
        allocation_pools=[AllocationPool(start=a, end=b) for a, b in row.allocation_pools],
        dns_nameservers=list(row.dns_nameservers),
        created_at=row.created_at,
    )


def network_view(row: NetworkRow, subnets: list[SubnetRow]) -> Network:
    return Network(
        id=row.id,
        name=row.name,
        project=row.project,
        type=row.type,
        mtu=row.mtu,
        labels=dict(row.labels),
        subnets=[subnet_view(s) for s in subnets],
        created_at=row.created_at,
        uplink=row.uplink,
    )


def port_view(row: PortRow, allocations: list[IpAllocationRow], groups: list[str] | None = None) -> Port:
    return Port(
        id=row.id,
        project=row.project,
        network=row.network_id,
        instance=row.instance_id,
        device=row.device,
        mac=row.mac,
        fixed_ips=[FixedIp(subnet=a.subnet_id, ip=a.address) for a in allocations],
        aliases=list(row.aliases),
        created_at=row.created_at,
        security_groups=list(groups or []),
    )


def nic_view(port: PortSpec) -> InstanceNic:
    return InstanceNic(
        network=port.network_id,
        port=port.id,
        device=port.device,
        mac=port.mac,
        ip=port.ip,
        prefix_len=port.prefix_len,
        gateway=port.gateway,
        aliases=list(port.aliases),
        ip_requested=port.ip_requested,
    )
