"""Domain errors. Each carries a stable code; the API maps codes to HTTP statuses in one place."""

from __future__ import annotations


class AtollError(Exception):
    """Base of every error that is meant to reach a user."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(AtollError):
    code = "not_found"


class Conflict(AtollError):
    """The request contradicts current state (name taken, instance running, image in use)."""

    code = "conflict"


class InvalidInput(AtollError):
    """The request itself is wrong; the message names the field."""

    code = "invalid"


class BadImage(InvalidInput):
    """An archive or image is corrupt, truncated, hostile or unsupported."""

    code = "bad_image"


class RuntimeFailure(AtollError):
    """The OCI runtime or the kernel refused an operation."""

    code = "runtime"


class RegistryError(AtollError):
    """A registry could not be reached or answered with an error that is neither ours nor the image's."""

    code = "registry"


class RegistryAuthError(RegistryError):
    """A registry refused our credentials, or wants credentials we don't have."""

    code = "registry_auth"


class Unauthorized(AtollError):
    """The caller could not prove who it is (a forged, expired or used join token; no certificate)."""

    code = "unauthorized"


class Forbidden(AtollError):
    """The caller is known but may not do this (a host acting for another host)."""

    code = "forbidden"
