"""The pure plan of what one host programs for its overlay networks, for many hosts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.model.overlay import OverlayNetwork, RemotePort
from atoll.services.overlay import PortPlace, Segment, plan_for_host


def place(net: str, port: str, host: str) -> PortPlace:
    return PortPlace(net, port, host, f"02:a7:00:00:00:{port}", f"10.0.0.{int(port, 16)}")


def test_plan_for_many_hosts() -> None:
    underlays = {"h1": "192.168.9.1", "h2": "192.168.9.2", "h3": "192.168.9.3", "h4": ""}
    segments = {"n1": Segment(100, 1450), "n2": Segment(200, 1400)}
    ports = [
        place("n1", "01", "h1"),
        place("n1", "02", "h2"),
        place("n1", "03", "h2"),
        place("n1", "04", "h3"),
        place("n1", "05", "h4"),  # its host has no underlay address: unreachable, left out
        place("n2", "06", "h2"),
        place("n2", "07", "h3"),
        place("bridge-net", "08", "h1"),  # no segment: not an overlay network
    ]
    (n1,) = plan_for_host("h1", ports, segments, underlays)
    assert (n1.network_id, n1.vni, n1.mtu) == ("n1", 100, 1450)
    assert n1.peers == ["192.168.9.2", "192.168.9.3"]
    assert [(r.port_id, r.underlay) for r in n1.remote_ports] == [
        ("02", "192.168.9.2"),
        ("03", "192.168.9.2"),
        ("04", "192.168.9.3"),
    ]
    assert n1.remote_ports[0] == RemotePort("02", "02:a7:00:00:00:02", "10.0.0.2", "h2", "192.168.9.2")
    h2 = plan_for_host("h2", ports, segments, underlays)
    assert [n.network_id for n in h2] == ["n1", "n2"]
    assert h2[0].peers == ["192.168.9.1", "192.168.9.3"]
    assert h2[1] == OverlayNetwork(
        "n2",
        200,
        1400,
        ["192.168.9.3"],
        [RemotePort("07", "02:a7:00:00:00:07", "10.0.0.7", "h3", "192.168.9.3")],
    )
    assert [n.network_id for n in plan_for_host("h3", ports, segments, underlays)] == ["n1", "n2"]
    assert plan_for_host("h5", ports, segments, underlays) == []  # no port there: nothing to program
    (alone,) = plan_for_host("h4", ports, segments, underlays)
    assert alone.peers == ["192.168.9.1", "192.168.9.2", "192.168.9.3"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["n1", "n2", "n3"]), st.integers(0, 5)),
        min_size=0,
        max_size=30,
        unique=False,
    )
)
def test_plan_properties(assignment: list[tuple[str, int]]) -> None:
    """Every host sees every remote port of its networks exactly once, never its own, and floods to
    exactly the hosts that hold them."""
    ports = [place(net, f"{i:02x}", f"h{host}") for i, (net, host) in enumerate(assignment)]
    underlays = {f"h{i}": f"192.168.9.{i + 1}" for i in range(6)}
    segments = {"n1": Segment(1, 1450), "n2": Segment(2, 1450), "n3": Segment(3, 1450)}
    for host in underlays:
        plans = {n.network_id: n for n in plan_for_host(host, ports, segments, underlays)}
        assert set(plans) == {p.network_id for p in ports if p.host_id == host}
        for net, plan in plans.items():
            remote = [p for p in ports if p.network_id == net and p.host_id != host]
            assert sorted(r.port_id for r in plan.remote_ports) == sorted(p.port_id for p in remote)
            assert set(plan.peers) == {underlays[p.host_id] for p in remote}
            assert underlays[host] not in plan.peers
