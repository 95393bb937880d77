"""Outbound for Docker networks: what dockerd's bridge does with masquerading on the host, done with a
native router.

dockerd lets every non-internal bridge network reach the outside world: the gateway address sits on
the host's bridge and the host masquerades. Atoll never puts tenant gateways in the host's namespace
(docs/networking.md, "Why the gateway is not on the bridge"); tenant traffic leaves only through a
router with a gateway on an external network (docs/routers.md). So each Docker network that is not
``--internal`` (the predefined ``bridge`` included) gets a router of its own:

- named ``docker-<first 12 hex digits of the network id>``, in the network's project, visible and
  manageable like any router (``atoll router ls``);
- with its gateway (SNAT on) on **the Docker uplink network**: the external network labelled
  ``atoll.docker.outbound`` (any value but ``false``), else the only external network if there is
  exactly one; with none, Docker networks stay inside, as before, and create says so in its
  ``Warning``;
- joined to every subnet of the network (each holds its gateway address).

One router per network, not one for all: a router joins what it touches, and Docker networks must stay
apart from each other. The router goes before its network is removed. All of this happens only in the
Docker translation layer; natively made networks are never given a router implicitly.
"""

from __future__ import annotations

import contextlib
import logging

from atoll.model.errors import AtollError, NotFound
from atoll.schemas import Network
from atoll.schemas_routing import RouterCreate, RouterInterfaceRequest
from atoll.services import networks, routers
from atoll.services.context import Controller
from atoll.services.routernudge import routing_changed

log = logging.getLogger(__name__)

LABEL = "atoll.docker.outbound"
ROUTER_PREFIX = "docker-"


def router_name(network: Network) -> str:
    return f"{ROUTER_PREFIX}{network.id[:12]}"


def uplink_network(ctl: Controller, project: str) -> Network | None:
    """The external network Docker networks leave by (see the module's docstring), or None."""
    external = [n for n in networks.list_networks(ctl, project=project) if n.type == "external"]
    chosen = [n for n in external if n.labels.get(LABEL, "false").lower() != "false" and LABEL in n.labels]
    if chosen:
        return sorted(chosen, key=lambda n: n.created_at)[0]
    return external[0] if len(external) == 1 else None


def give_rows(ctl: Controller, *, project: str, network: Network) -> str:
    """Make the network's router (without telling the hosts). Returns a warning, "" if none: a network
    without outbound is still a network, so a failure here never fails the network's creation."""
    uplink = uplink_network(ctl, project)
    if uplink is None:
        return ""  # a cloud without an external network: every network stays inside (docs/docker.md)
    name = router_name(network)
    try:
        routers.create_router(
            ctl, project=project, request=RouterCreate(name=name, external_gateway=uplink.id)
        )
        for subnet in network.subnets:
            routers.add_interface(
                ctl, project=project, ref=name, request=RouterInterfaceRequest(subnet=subnet.id)
            )
    except AtollError as e:
        with contextlib.suppress(AtollError):
            _remove_rows(ctl, project, network)
        log.warning("Docker network %s gets no outbound: %s", network.name, e.message)
        return f"no outbound through {uplink.name}: {e.message}"
    return ""


async def give(ctl: Controller, *, project: str, network: Network) -> str:
    """``give_rows``, then the hosts realise the router at once."""
    warning = give_rows(ctl, project=project, network=network)
    if not warning:
        await routing_changed(ctl)
    return warning


def _remove_rows(ctl: Controller, project: str, network: Network) -> bool:
    name = router_name(network)
    try:
        router = routers.get_router(ctl, project=project, ref=name)
    except NotFound:
        return False
    for interface in router.interfaces:
        with contextlib.suppress(NotFound):
            routers.remove_interface(ctl, project=project, ref=router.id, subnet_ref=interface.subnet)
    routers.remove_router(ctl, project=project, ref=router.id)
    return True


async def take(ctl: Controller, *, project: str, network: Network) -> None:
    """Remove the network's router, if it has one (before the network itself goes)."""
    if _remove_rows(ctl, project, network):
        await routing_changed(ctl)
