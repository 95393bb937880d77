"""Which instance NICs are known to have their BIG TCP size, and the fitting of the others.

An instance's NIC gets ``HostNetwork.nic_size`` of its network (see ``wiring``): 192 KiB while its
bridge has only instance veths, 64 KiB while the network has peers on other hosts or a router leg
here. A NIC made by this agent starts at its size, and a change of peers or routers re-sizes the
NICs of the networks it changed. That alone would trust the kernel for every NIC it did not make: an
agent started again finds NICs sized by its predecessor for peers or routers that may have gone
while it was down (or that it lowered and then crashed before the VXLAN device was made). So the
ports whose size this agent set are remembered; every other NIC is read back and fitted once the
agent knows the network's peers (the first overlay refresh after start), and then only when its
network's size changes. Fitting is idempotent (``bigtcp.apply`` reads before it writes); a NIC that
could not be fitted stays unknown and is tried again at the next refresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path

from atoll.agent.net import netns, wiring
from atoll.model.errors import RuntimeFailure
from atoll.model.network import PortSpec

log = logging.getLogger(__name__)


class NicSizes:
    def __init__(self, netns_path: Callable[[str], Path]) -> None:
        self._netns_path = netns_path
        self._sized: set[str] = set()
        """Port ids whose NIC has the size its network had when this agent last set or read it."""

    def made(self, port_ids: Iterable[str]) -> None:
        """NICs just made, at their network's size."""
        self._sized.update(port_ids)

    def pending(self, attached: Mapping[str, list[PortSpec]]) -> bool:
        """Whether some attached NIC's size is not known."""
        return any(p.id not in self._sized for ports in attached.values() for p in ports)

    def fit(
        self,
        attached: Mapping[str, list[PortSpec]],
        nic_size: Callable[[str], int],
        before: Mapping[str, int],
        *,
        unknown: bool,
    ) -> None:
        """Give ``nic_size`` to the NICs of the networks whose size changed since ``before`` and, with
        ``unknown``, to those whose size is not known. Blocking (it enters the instances' namespaces)."""
        self._sized &= {p.id for ports in attached.values() for p in ports}
        for instance_id, ports in attached.items():
            for port in ports:
                size = nic_size(port.network_id)
                changed = before.get(port.network_id, size) != size
                if not changed and not (unknown and port.id not in self._sized):
                    continue
                try:
                    netns.run_in(self._netns_path(instance_id), partial(wiring.fit_nic, port.device, size))
                except (OSError, RuntimeFailure):
                    log.warning("could not set the GSO size of %s of %s", port.device, instance_id[:12])
                    self._sized.discard(port.id)
                else:
                    self._sized.add(port.id)
