"""nftables through libnftables in-process (atoll/agent/net/libnft.py): it acts in the calling thread's
network namespace, a script is one transaction, and errors come back with nft's message."""

from __future__ import annotations

import json

import pytest

from atoll.agent.net import libnft, netns, nft
from atoll.agent.net.names import Names
from atoll.model.errors import RuntimeFailure

from .helpers import Host

pytestmark = pytest.mark.skipif(
    not libnft.available, reason="libnftables.so.1 (Debian libnftables1) is missing"
)


def test_in_the_callers_namespace_and_all_or_nothing(host: Host, names: Names) -> None:
    t = names.table
    netns.run_in(
        host.path, lambda: nft.apply(f"table inet {t} {{\n\tset s {{\n\t\ttype ipv4_addr\n\t}}\n}}\n")
    )
    assert f"table inet {t}" in host.nft_tables()  # in the test's host namespace, not in ours
    assert (("inet", t)) not in nft.tables()
    with pytest.raises(RuntimeFailure, match="No such file or directory"):  # the second command fails
        netns.run_in(
            host.path,
            lambda: nft.apply(
                f"add element inet {t} s {{ 10.0.0.1 }}\nadd element inet {t} nope {{ 10.0.0.2 }}\n"
            ),
        )
    assert "10.0.0.1" not in host.run("nft", "list", "set", "inet", t, "s").stdout  # none of it
    listed = netns.run_in(host.path, lambda: libnft.run("list tables", json=True))
    assert {"family": "inet", "name": t} in [
        {k: i["table"][k] for k in ("family", "name")}
        for i in json.loads(listed.output)["nftables"]
        if "table" in i
    ]
    netns.run_in(host.path, lambda: nft.apply(nft.render_delete(names)))
    assert not host.nft_tables()
