"""The agent as its own process on a host of a cluster: joining, heartbeats, and its mTLS API."""
