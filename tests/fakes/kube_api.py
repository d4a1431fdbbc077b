"""A fake Kubernetes API server: just enough of the ConfigMap list and watch endpoints."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bytespike_common.devstack import free_port


class FakeKubeAPI:
    def __init__(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.namespace, self.name = namespace, name
        self.data = data
        self.version = 1
        self.watchers: list[asyncio.Queue[dict[str, Any] | None]] = []
        self.lists = 0

    def _object(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": str(self.version),
            },
            "data": self.data,
        }

    def update(self, data: dict[str, str]) -> None:
        self.data = data
        self.version += 1
        for queue in self.watchers:
            queue.put_nowait({"type": "MODIFIED", "object": self._object()})

    def close_watches(self) -> None:
        for queue in self.watchers:
            queue.put_nowait(None)

    async def configmaps(self, request: Request) -> Response:
        if request.path_params["namespace"] != self.namespace:
            return JSONResponse({"kind": "Status", "code": 404}, 404)
        if request.query_params.get("watch") in ("true", "True", "1"):
            return StreamingResponse(self._events(), media_type="application/json")
        self.lists += 1
        return JSONResponse(
            {
                "apiVersion": "v1",
                "kind": "ConfigMapList",
                "metadata": {"resourceVersion": str(self.version)},
                "items": [self._object()],
            }
        )

    async def _events(self) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.watchers.append(queue)
        try:
            while (event := await queue.get()) is not None:
                yield orjson.dumps(event) + b"\n"
        finally:
            self.watchers.remove(queue)


@contextlib.asynccontextmanager
async def serve(api: FakeKubeAPI) -> AsyncIterator[str]:
    port = free_port()
    app = Starlette(routes=[Route("/api/v1/namespaces/{namespace}/configmaps", api.configmaps)])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        api.close_watches()
        server.should_exit = True
        await task
