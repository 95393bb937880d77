"""The controller's agent-facing listener (mTLS): joins, and the ``ControlPlane`` protocol over RPC.

- ``GET /join/ca``: the CA certificate. A new host fetches it before it trusts anything, and checks it
  against the fingerprint in its join token.
- ``POST /join``: a ``JoinRequest`` (token secret, CSR); answers the host's certificate.
- ``POST /rpc/{method}``: any ``ControlPlane`` method. The caller is the host named by its client
  certificate; an argument ``host_id`` that names another host is refused, so a host can neither read
  nor report for another.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from atoll.host_schemas import JoinRequest
from atoll.model.errors import AtollError, Forbidden, InvalidInput
from atoll.model.ports import ControlPlane
from atoll.services import membership
from atoll.services.context import Controller
from atoll.services.control import LocalControlPlane
from atoll.wire.errors import error_body, error_status
from atoll.wire.listener import peer_of
from atoll.wire.server import rpc_routes
from atoll.wire.shapes import MethodShape


def _error(e: AtollError) -> Response:
    return JSONResponse({"error": error_body(e)}, status_code=error_status(e))


def cluster_app(ctl: Controller) -> Starlette:
    control = LocalControlPlane(ctl)

    def resolve(conn: HTTPConnection, shape: MethodShape, kwargs: dict[str, Any]) -> Any:
        host_id = membership.authorize_host(ctl, peer_of(conn))
        claimed = kwargs.get("host_id", host_id)
        if claimed != host_id:
            raise Forbidden(f"host_id: this certificate belongs to host {host_id}, not {claimed}")
        return control

    async def ca(_: Request) -> Response:
        assert ctl.cluster is not None
        return Response(ctl.cluster.ca_cert_pem, media_type="application/x-pem-file")

    async def join(request: Request) -> Response:
        try:
            try:
                body = JoinRequest.model_validate_json(await request.body())
            except ValidationError as e:
                first = e.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or "body"
                raise InvalidInput(f"{field}: {first['msg']}") from None
            answer = membership.join(ctl, body)
        except AtollError as e:
            return _error(e)
        return JSONResponse(answer.model_dump())

    routes = [
        Route("/join/ca", ca, methods=["GET"]),
        Route("/join", join, methods=["POST"]),
        *rpc_routes(ControlPlane, resolve),
    ]
    return Starlette(routes=routes)
