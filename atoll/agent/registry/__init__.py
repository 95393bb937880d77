"""Talking to OCI distribution registries: references, auth, pull and push. See docs/registries.md."""
