"""The native API application. ``create_app`` is given a fully built ``Controller``; it holds no state."""

from __future__ import annotations

from fastapi import FastAPI

from atoll import __version__
from atoll.api.errors import install_error_handlers
from atoll.api.routes import (
    cluster,
    exec_ws,
    hosts,
    images,
    instances,
    networks,
    projects,
    registry,
    secgroups,
)
from atoll.api.routes import controllers as controller_routes
from atoll.api.routes import nics as nic_routes
from atoll.api.routes import rename as rename_routes
from atoll.api.routes import routers as routers_routes
from atoll.api.routes import volumes as volume_routes
from atoll.services.context import Controller

ROUTERS = (
    projects.router,
    hosts.router,
    registry.router,
    images.router,
    instances.router,
    networks.router,
    exec_ws.router,
    volume_routes.router,
    routers_routes.router,
    secgroups.router,
    rename_routes.router,
    cluster.router,
    nic_routes.router,
    controller_routes.router,
)


def create_app(ctl: Controller) -> FastAPI:
    app = FastAPI(
        title="Atoll",
        version=__version__,
        description="The native API of Atoll, a container-native cloud.",
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
    )
    app.state.ctl = ctl
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
