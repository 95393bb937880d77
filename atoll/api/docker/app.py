"""Assembles the Docker listener: the route table of every resource module and the error mapping."""

from __future__ import annotations

from atoll.api.docker.archive import Archive
from atoll.api.docker.attach import Output
from atoll.api.docker.containers import Containers
from atoll.api.docker.events import Events
from atoll.api.docker.execs import Execs
from atoll.api.docker.http import DockerError
from atoll.api.docker.imagefiles import ImageFiles
from atoll.api.docker.images import Images
from atoll.api.docker.netconnect import NetworkConnect
from atoll.api.docker.networks import Networks
from atoll.api.docker.router import Router
from atoll.api.docker.server import DockerServer
from atoll.api.docker.swarm import routes as swarm_routes
from atoll.api.docker.system import System
from atoll.api.docker.usage import Usage
from atoll.api.docker.volumes import Volumes
from atoll.api.errors import status_for
from atoll.model.errors import AtollError
from atoll.services.context import Controller


def map_error(error: BaseException) -> DockerError | None:
    """Domain errors keep their status (404, 409, 400...) and carry their message as Docker's."""
    if isinstance(error, AtollError):
        return DockerError(status_for(error), error.message)
    return None


def create_docker_server(ctl: Controller) -> DockerServer:
    containers = Containers(ctl)
    image_files = ImageFiles(ctl)
    routes = [
        *System(ctl).routes(),
        *containers.routes(),
        *Output(containers).routes(),
        *Execs(containers).routes(),
        *Images(ctl, image_files.import_rootfs).routes(),
        *Usage(containers).routes(),
        *Events(ctl).routes(),
        *Networks(ctl).routes(),
        *NetworkConnect(ctl).routes(),
        *Volumes(ctl).routes(),
        *image_files.routes(),
        *Archive(containers).routes(),
        *swarm_routes(),
    ]
    return DockerServer(Router(routes), map_error)
