"""The generation routes' fast lane: straight from ASGI to the protocol handler.

The generation routes are nearly all the edge's traffic, and FastAPI's machinery around
them — routing, dependency injection, the exception and exit-stack middlewares, one ASGI
layer per edge middleware — cost more CPU than the rest of a passthrough request. So
`EdgeApp` serves `POST` to these paths itself, in one layer doing what those layers did:

- the client address for the bad-key budget (`ClientAddressMiddleware`);
- the request record and metrics (`ObservabilityMiddleware`), labelled with the same
  route template FastAPI would have matched;
- the OTel server span, when tracing is on (FastAPI's instrumentation never sees these);
- a `GatewayError` answered in the caller's protocol, anything unexpected as its
  `InternalError` (the app's exception handlers), never a bare 500.

Everything else (model lists, probes, unknown paths, other methods, trailing slashes)
goes through FastAPI unchanged; the generation routes stay registered there too, so the
schema and FastAPI's own answers (405, redirects) do not change.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bytespike_common.errors import GatewayError, InternalError
from bytespike_common.ids import request_id as new_request_id
from bytespike_edge import observability
from bytespike_edge.control.auth import client_address
from bytespike_edge.gateway import Gateway
from bytespike_edge.protocols import anthropic, gemini, openai
from bytespike_edge.protocols.errors import protocol_for_path, render

log = logging.getLogger(__name__)

# (request, gateway, request id) -> the answer; raises GatewayError for the caller's errors.
Handler = Callable[[Request, Gateway, str], Awaitable[Response]]
# Where the matched route travels in the scope, for the tracing wrapper's span name.
_ROUTE = "bytespike.lane_route"


@dataclass(frozen=True, slots=True)
class LaneRoute:
    template: str  # FastAPI's route path: the `route` metric label and the span name
    protocol: str  # the `protocol` metric label, as FastAPI's routes get it
    handler: Handler


def _route(template: str, handler: Handler) -> LaneRoute:
    return LaneRoute(template, str(protocol_for_path(template)), handler)


_EXACT = {
    "/v1/chat/completions": _route("/v1/chat/completions", openai.serve_chat_completions),
    "/v1/messages": _route("/v1/messages", anthropic.serve_messages),
    "/v1/messages/count_tokens": _route("/v1/messages/count_tokens", anthropic.serve_count_tokens),
}
# (path prefix, route): the rest of the path is the `{target:path}` parameter.
_PREFIXED = (
    ("/v1beta/models/", _route("/v1beta/models/{target:path}", gemini.serve_model_method)),
    ("/v1/models/", _route("/v1/models/{target:path}", gemini.serve_model_method)),
)


def match(path: str) -> tuple[LaneRoute, dict[str, str]] | None:
    """The lane route a `POST` to `path` takes, with its path parameters; None for FastAPI."""
    exact = _EXACT.get(path)
    if exact is not None:
        return exact, {}
    for prefix, route in _PREFIXED:
        if path.startswith(prefix):
            return route, {"target": path[len(prefix) :]}
    return None


class EdgeApp(FastAPI):
    """The public app: FastAPI, with the generation routes served by the fast lane."""

    # The lane inside an OTel server span, once `trace_lane` found tracing on.
    _traced_lane: ASGIApp | None = None

    def trace_lane(self) -> None:
        """From `create_app`, after tracing is configured (as `observability.install`)."""
        serve = self._serve
        traced = observability.trace_server_spans(serve, lambda scope: scope[_ROUTE].template)
        self._traced_lane = None if traced is serve else traced

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            matched = match(scope["path"])
            if matched is not None:
                scope[_ROUTE], scope["path_params"] = matched
                scope["app"] = self
                await (self._traced_lane or self._serve)(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        # `observability.observe_request` inlined: the lane knows the status from the
        # answer it is about to send, so its `send` needs no wrapper noting it.
        client = scope.get("client")
        address = client_address.set(client[0] if client else None)
        record, token = observability.start_request()
        route: LaneRoute = scope[_ROUTE]
        status = 499  # client closed the request: no answer went out
        try:
            response = await self._respond(route, Request(scope, receive))
            status = response.status_code
            await response(scope, receive, send)
        except Exception:
            status = 500
            raise
        finally:
            observability.finish_request(token, record, route.protocol, route.template, status)
            client_address.reset(address)

    async def _respond(self, route: LaneRoute, request: Request) -> Response:
        """The handler's answer, or its error in the caller's protocol (as the app's
        exception handlers render them for FastAPI's routes)."""
        request_id = new_request_id()
        try:
            gateway: Gateway = self.state.gateway
            return await route.handler(request, gateway, request_id)
        except GatewayError as err:
            return render(protocol_for_path(request.scope["path"]), err, request_id)
        except Exception as exc:
            log.exception("unhandled error on %s", request.scope["path"])
            observability.record_exception(exc)
            error = InternalError("Internal gateway error.")
            return render(protocol_for_path(request.scope["path"]), error, request_id)
