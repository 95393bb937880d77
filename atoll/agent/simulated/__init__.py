"""Simulated hosts: the real agent protocol (join by token, mTLS, heartbeats, the `HostAgent` RPC
endpoints) without kernel work, so one machine can stand up a thousand hosts against a real controller
for control-plane load tests. See docs/cluster.md, "Scale by simulation"."""
