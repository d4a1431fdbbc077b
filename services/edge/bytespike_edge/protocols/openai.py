"""OpenAI Chat Completions: `POST /v1/chat/completions` (reference/protocols.md §3).

An OpenAI-protocol upstream is a passthrough: the body is forwarded with only the model
rewritten (and usage requested on streams), the answer relayed as it arrives while usage is
read from it. Unknown and future fields survive untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
from bytespike_edge.failover import Attempts, Opened, Prepared
from bytespike_edge.gateway import Target
from bytespike_edge.http_io import bearer_token, read_json_object
from bytespike_edge.protocols.errors import openai_error_body
from bytespike_edge.relay import relay_stream
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
    """An OpenAI-protocol upstream's error body as a gateway error with the same status."""
    message = f"Upstream returned HTTP {status}."
    code = None
    try:
        error = orjson.loads(body).get("error") or {}
        message = str(error.get("message") or message)
        code = error.get("code")
    except (orjson.JSONDecodeError, AttributeError):
        pass
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
    targets = [
        t for t in gateway.targets(model) if t.provider.protocol == router_pb2.PROTOCOL_OPENAI
    ]
    if not targets:
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
        target=targets[0],
        stream=stream,
        request_bytes=len(raw),
        max_output_tokens=int(max_output),
    )
    try:
        opened = await Attempts(gateway, call).open(
            targets, _passthrough_request(data, stream), _decode_error, stream=stream
        )
    except GatewayError as exc:
        call.status_code, call.error_cause = exc.status, exc.cause
        gateway.finish(call)
        raise
    except BaseException:
        call.error_cause = "internal"
        gateway.finish(call)
        raise
    call.status_code = 200
    if stream:
        options = data.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        frames = relay_stream(
            opened.chunks,
            opened.response,
            call,
            handler=_OpenAIFrames(call, wants_usage),
            on_done=gateway.finish,
            keepalive_interval=gateway.settings.stream_keepalive,
        )
        headers = {**SSE_HEADERS, "x-request-id": call.request_id}
        return StreamingResponse(frames, media_type="text/event-stream", headers=headers)
    try:
        return await _relay_body(opened, call)
    finally:
        gateway.finish(call)


def _decode_error(
    target: Target, status: int, body: bytes, headers: Mapping[str, str]
) -> GatewayError:
    return decode_openai_error(status, body)


def _passthrough_request(data: dict[str, Any], stream: bool) -> Callable[[Target], Prepared]:
    """Same protocol upstream: the client's body with only the model rewritten."""
    options = data.get("stream_options")

    def prepare(target: Target) -> Prepared:
        body = {**data, "model": target.deployment.upstream_model}
        if stream:
            # The gateway always needs usage to bill, whether or not the client asked for it.
            body["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        return Prepared(
            url=target.provider.base_url + CHAT_PATH,
            headers=request_headers(target.provider, target.credential),
            body=orjson.dumps(body),
        )

    return prepare


async def _relay_body(opened: Opened, call: CallContext) -> Response:
    response = opened.response
    try:
        content = await response.aread()
    finally:
        await response.aclose()
    call.mark_first_byte()
    try:
        parsed = orjson.loads(content)
        call.usage = usage_from_openai(parsed["usage"]) if parsed.get("usage") else None
        choices = parsed.get("choices") or [{}]
        call.finish_reason = str(choices[0].get("finish_reason") or "")
    except (orjson.JSONDecodeError, AttributeError, IndexError, KeyError, TypeError):
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

    def frame(self, frame: bytes) -> bytes:
        if b'"usage"' in frame and b'"usage":null' not in frame:
            chunk = self._parse(frame)
            if chunk is not None and isinstance(chunk.get("usage"), dict):
                self._call.usage = usage_from_openai(chunk["usage"])
                if not self._client_wants_usage and not chunk.get("choices"):
                    return b""
        if not self._call.finish_reason and b'"finish_reason":"' in frame:
            chunk = self._parse(frame)
            for choice in (chunk or {}).get("choices") or []:
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    self._call.finish_reason = str(choice["finish_reason"])
        if frame.startswith(b'data: {"error"'):
            self._call.error_cause = "upstream_stream_error"
        return frame

    def end(self) -> bytes:
        return b""

    def error(self, err: GatewayError) -> bytes:
        return b"data: " + orjson.dumps(openai_error_body(err)) + b"\n\n"

    def keepalive(self) -> bytes:
        return b": keepalive\n\n"

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
