"""Swarm endpoints, answered as a dockerd that is not part of a swarm.

Atoll is one Docker host made of many machines; it has no swarm mode (services, nodes, secrets,
configs). Clients probe these paths (docker-py's ``leave_swarm(force=True)`` in clean-ups, ``docker
info``-driven tools), so they get dockerd's own "not in a swarm" answers: 503 for what needs a swarm,
and a clear 501 for starting or joining one.
"""

from __future__ import annotations

from atoll.api.docker.http import Answer, DockerError, Request
from atoll.api.docker.router import Route

NOT_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this '
    "node to swarm and try again."
)


async def not_a_manager(req: Request) -> Answer:
    raise DockerError(503, NOT_MANAGER)


async def leave(req: Request) -> Answer:
    raise DockerError(503, "This node is not part of a swarm")


async def refuse(req: Request) -> Answer:
    raise DockerError(501, "swarm mode is not supported by Atoll: it is one Docker host already")


def routes() -> list[Route]:
    out = [
        Route("GET", "/swarm", not_a_manager),
        Route("POST", "/swarm/leave", leave),
        Route("POST", "/swarm/init", refuse),
        Route("POST", "/swarm/join", refuse),
        Route("POST", "/swarm/update", not_a_manager),
        Route("GET", "/swarm/unlockkey", not_a_manager),
        Route("POST", "/swarm/unlock", not_a_manager),
    ]
    for kind in ("nodes", "services", "tasks", "secrets", "configs"):
        out.append(Route("GET", f"/{kind}", not_a_manager))
        out.append(Route("GET", f"/{kind}/{{id}}", not_a_manager))
    for kind in ("services", "secrets", "configs"):
        out.append(Route("POST", f"/{kind}/create", not_a_manager))
    return out
