"""Atoll: a container-native cloud."""

__version__ = "0.1.0"
