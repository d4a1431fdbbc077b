"""FastAPI dependencies as `Annotated` aliases, and the request id FastAPI routes mint."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bytespike_common.ids import request_id as new_request_id
from bytespike_edge.gateway import Gateway


async def get_gateway(request: Request) -> Gateway:
    # async: FastAPI runs a plain `def` dependency in a worker thread (a hop per request).
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def mint_request_id(request: Request) -> str:
    """A new request id, kept on the request for the app's error handlers to answer with."""
    request_id: str = new_request_id()
    request.state.request_id = request_id
    return request_id
