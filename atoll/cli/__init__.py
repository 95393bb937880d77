"""The `atoll` command line, built only on the SDK (atoll.client)."""
