"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from atoll.services.context import Controller


def controller(conn: HTTPConnection) -> Controller:
    ctl = conn.app.state.ctl
    if not isinstance(ctl, Controller):
        raise TypeError("app.state.ctl is not a Controller")
    return ctl


Ctl = Annotated[Controller, Depends(controller)]
