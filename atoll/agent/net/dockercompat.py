"""Coexisting with dockerd's iptables rules.

dockerd sets the ``FORWARD`` chain of iptables' ``filter`` table to policy ``DROP`` and sends every
forwarded packet through its ``DOCKER-USER`` chain first. With ``br_netfilter`` (which Docker also turns
on, and which security groups need), packets bridged within our tenant bridges pass the ``FORWARD``
hook too, as do the DNATed connections of published ports going to their ``<prefix>p-*`` veths. An
accept in our own nftables table cannot override another table's drop, so without help no tenant
traffic would flow on a host where dockerd runs.

So, while the host has our tables and a ``DOCKER-USER`` chain exists, the agent keeps three rules at
its head, marked with a comment naming our table (so several Atoll clouds on one host, and test runs,
each keep and remove only their own):

    -i <prefix>b-+ -o <prefix>b-+ -j ACCEPT     traffic bridged within our bridges (and through routers)
    -o <prefix>p-+ -j ACCEPT                    published ports: DNATed connections in
    -i <prefix>p-+ -j ACCEPT                    ... and their replies out

Accepting them there loosens nothing: our own ``forward`` chain runs before iptables' (priority
``filter - 10``) and has already dropped whatever must not pass (traffic between bridges, anything
routed from or to a tenant network, new connections out of a publishing veth). When our tables go,
the rules go. The chain itself is dockerd's and is never created or deleted here. Without ``iptables``
or without the chain, nothing is done.
"""

from __future__ import annotations

import logging
import shutil
import subprocess

from atoll.agent.net.names import BRIDGE, PUBLISH, Names

log = logging.getLogger(__name__)

CHAIN = "DOCKER-USER"


def comment(names: Names) -> str:
    return f"atoll {names.table}"


def rules(names: Names) -> list[list[str]]:
    """Our rules as iptables arguments after the chain name, in the order they stand at its head."""
    bridges = f"{names.prefix}{BRIDGE}-+"
    pub = f"{names.prefix}{PUBLISH}-+"
    mark = ["-m", "comment", "--comment", comment(names)]
    return [
        ["-i", bridges, "-o", bridges, *mark, "-j", "ACCEPT"],
        ["-o", pub, *mark, "-j", "ACCEPT"],
        ["-i", pub, *mark, "-j", "ACCEPT"],
    ]


def _iptables(*args: str) -> subprocess.CompletedProcess[str] | None:
    """``iptables -w ...`` in the calling thread's network namespace; None without iptables."""
    if shutil.which("iptables") is None:
        return None
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, timeout=30)


def _chain_rules() -> list[str] | None:
    """The rules of ``DOCKER-USER`` as ``iptables -S`` prints them; None if there is no such chain."""
    listed = _iptables("-t", "filter", "-S", CHAIN)
    if listed is None or listed.returncode != 0:
        return None
    return listed.stdout.splitlines()


def ensure(names: Names) -> bool:
    """Put our rules at the head of ``DOCKER-USER`` if the chain exists and lacks them. Returns whether
    the chain exists. Failures are logged, not raised: a host without Docker must not suffer for it."""
    present = _chain_rules()
    if present is None:
        return False
    ours = [line for line in present if comment(names) in line]
    if len(ours) == len(rules(names)):
        return True
    remove(names)
    for position, rule in enumerate(rules(names), start=1):
        done = _iptables("-t", "filter", "-I", CHAIN, str(position), *rule)
        if done is not None and done.returncode != 0:
            log.warning("could not add an ACCEPT rule to %s: %s", CHAIN, done.stderr.strip())
    return True


def remove(names: Names) -> None:
    """Delete our rules from ``DOCKER-USER`` (every copy), leaving the chain and others' rules."""
    if _chain_rules() is None:
        return
    for rule in rules(names):
        for _ in range(16):  # copies left by a crash between insert and check; bounded, never a loop
            done = _iptables("-t", "filter", "-D", CHAIN, *rule)
            if done is None or done.returncode != 0:
                break
