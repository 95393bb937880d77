"""The network dataplane of a host: tenant bridges, instance namespaces and veths, nftables isolation.

Modules, one concept each:

- ``names``: the prefixed names of every link and table the dataplane owns.
- ``netns``: namespaces kept alive by a bind mount, and code run inside one (per thread).
- ``netlink``: the thin, typed layer over pyroute2.
- ``nft``: the rule set, rendered from desired state and applied atomically with ``nft -f``.
- ``dataplane``: ``HostNetwork``, the object the agent calls: attach, release, sync.
"""
