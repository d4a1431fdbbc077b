"""FastAPI dependencies as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bytespike_edge.gateway import Gateway


async def get_gateway(request: Request) -> Gateway:
    # async: FastAPI runs a plain `def` dependency in a worker thread (a hop per request).
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
