"""The cluster's wire: generic RPC for the ``atoll.model.ports`` protocols over HTTPS with mutual TLS,
the cluster PKI and join tokens. Neutral ground: both the agent and the controller import it, and it
imports neither of them (only ``atoll.model``)."""
