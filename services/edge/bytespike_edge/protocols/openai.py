"""OpenAI Chat Completions: `POST /v1/chat/completions` (reference/protocols.md §3).

An OpenAI-protocol upstream is a passthrough: the body is forwarded with only the model
rewritten (and usage requested on streams), the answer relayed as it arrives while usage is
read from it. Unknown and future fields survive untouched.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from bytespike.router.v1 import router_pb2
from bytespike_common.errors import (
    GatewayError,
    InvalidRequest,
    UpstreamHTTPError,
    kind_for_status,
)
from bytespike_common.ids import request_id as new_request_id
from bytespike_edge.call import CallContext, Usage
from bytespike_edge.deps import GatewayDep
from bytespike_edge.gateway import Target
from bytespike_edge.http_io import bearer_token, read_json_object
from bytespike_edge.protocols.errors import openai_error_body
from bytespike_edge.relay import raise_for_upstream_status, relay_stream
from bytespike_edge.upstream.wire import CHAT_PATH, request_headers

router = APIRouter()
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def usage_from_openai(usage: dict[str, Any]) -> Usage:
    """prompt_tokens includes cached (and cache-write) tokens; canonical input excludes them."""
    prompt = int(usage.get("prompt_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or 0)
    completion_details = usage.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=max(0, prompt - cached - written),
        cache_read_tokens=cached,
        cache_write_tokens=written,
        output_tokens=int(usage.get("completion_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


def decode_openai_error(status: int, body: bytes) -> GatewayError:
    message = f"Upstream returned HTTP {status}."
    code = None
    try:
        error = orjson.loads(body).get("error") or {}
        message = str(error.get("message") or message)
        code = error.get("code")
    except (orjson.JSONDecodeError, AttributeError):
        pass
    if status in (401, 403):
        # The vendor refused *our* credential: a gateway misconfiguration, not the caller's.
        return UpstreamHTTPError(
            "The upstream provider rejected the gateway's credential.", status=502
        )
    err = UpstreamHTTPError(message, status=status, code=code if isinstance(code, str) else None)
    err.kind = kind_for_status(status)
    return err


def _validate(data: dict[str, Any]) -> tuple[str, bool]:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a string.", param="model")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    for name in ("max_tokens", "max_completion_tokens"):
        value = data.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise InvalidRequest(f"'{name}' must be a non-negative integer.", param=name)
    return model, stream


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, gateway: GatewayDep) -> Response:
    request_id = new_request_id()
    request.state.request_id = request_id
    raw, data = await read_json_object(request, gateway.settings.max_body_bytes)
    principal = await gateway.authenticate(bearer_token(request))
    model_name, stream = _validate(data)
    model = gateway.resolve_model(model_name, principal)
    target = gateway.targets(model)[0]
    if target.provider.protocol != router_pb2.PROTOCOL_OPENAI:
        raise InvalidRequest(
            f"The model '{model.id}' is served over a protocol this gateway cannot translate "
            "to from Chat Completions yet."
        )
    max_output = data.get("max_completion_tokens") or data.get("max_tokens") or 0
    call = await gateway.open_call(
        request_id=request_id,
        client_protocol="openai",
        principal=principal,
        model=model,
        target=target,
        stream=stream,
        request_bytes=len(raw),
        max_output_tokens=int(max_output),
    )
    if stream:
        return await _passthrough_stream(gateway, call, target, data)
    try:
        return await _passthrough(gateway, call, target, data)
    finally:
        gateway.finish(call)


async def _send(gateway: Any, call: CallContext, target: Target, body: dict[str, Any]) -> Any:
    url = target.provider.base_url + CHAT_PATH
    headers = request_headers(target.provider, target.credential)
    try:
        response = await gateway.upstream.send(url, headers, orjson.dumps(body), target.timeouts)
    except GatewayError as exc:
        call.status_code, call.error_cause = exc.status, exc.cause
        raise
    await _check(response, call)
    return response


async def _check(response: Any, call: CallContext) -> None:
    try:
        await raise_for_upstream_status(response, call, decode_openai_error)
    except GatewayError as exc:
        call.status_code = exc.status
        raise


async def _passthrough(
    gateway: Any, call: CallContext, target: Target, data: dict[str, Any]
) -> Response:
    body = {**data, "model": target.deployment.upstream_model}
    response = await _send(gateway, call, target, body)
    try:
        content = await response.aread()
    finally:
        await response.aclose()
    call.mark_first_byte()
    call.status_code = 200
    try:
        parsed = orjson.loads(content)
        call.usage = usage_from_openai(parsed.get("usage") or {}) if parsed.get("usage") else None
        choices = parsed.get("choices") or [{}]
        call.finish_reason = str(choices[0].get("finish_reason") or "")
    except (orjson.JSONDecodeError, AttributeError, IndexError):
        call.error_cause = "upstream_malformed"
    return Response(
        content,
        200,
        {"x-request-id": call.request_id},
        media_type=response.headers.get("content-type", "application/json"),
    )


class _OpenAIFrames:
    """Reads usage and the finish reason from passthrough frames without re-encoding any."""

    def __init__(self, call: CallContext, client_wants_usage: bool) -> None:
        self._call = call
        self._client_wants_usage = client_wants_usage

    def __call__(self, frame: bytes) -> bytes | None:
        if b'"usage"' in frame and b'"usage":null' not in frame:
            chunk = self._parse(frame)
            if chunk is not None and isinstance(chunk.get("usage"), dict):
                self._call.usage = usage_from_openai(chunk["usage"])
                if not self._client_wants_usage and not chunk.get("choices"):
                    return None
        if not self._call.finish_reason and b'"finish_reason":"' in frame:
            chunk = self._parse(frame)
            for choice in (chunk or {}).get("choices") or []:
                if choice.get("finish_reason"):
                    self._call.finish_reason = str(choice["finish_reason"])
        if b'"error"' in frame and frame.lstrip().startswith(b'data: {"error"'):
            self._call.error_cause = "upstream_stream_error"
        return frame

    @staticmethod
    def _parse(frame: bytes) -> dict[str, Any] | None:
        for line in frame.splitlines():
            if line.startswith(b"data:"):
                try:
                    value = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    return None
                return value if isinstance(value, dict) else None
        return None


def _stream_error_frame(err: GatewayError) -> bytes:
    return b"data: " + orjson.dumps(openai_error_body(err)) + b"\n\n"


async def _passthrough_stream(
    gateway: Any, call: CallContext, target: Target, data: dict[str, Any]
) -> Response:
    options = data.get("stream_options")
    client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    # The gateway always needs usage to bill, whether or not the client asked for it.
    body = {
        **data,
        "model": target.deployment.upstream_model,
        "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True},
    }
    try:
        response = await _send(gateway, call, target, body)
    except BaseException:
        gateway.finish(call)
        raise
    call.status_code = 200
    frames = relay_stream(
        response, call, _OpenAIFrames(call, client_wants_usage), _stream_error_frame, gateway.finish
    )
    headers = {**SSE_HEADERS, "x-request-id": call.request_id}
    return StreamingResponse(frames, media_type="text/event-stream", headers=headers)
