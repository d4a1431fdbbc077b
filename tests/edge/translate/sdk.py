"""Run the official SDKs against bytes the codecs produced, through an in-memory transport.

Each helper answers one SDK call with the given body (JSON or SSE) and returns what the
SDK parsed, so a test proves "the client's own library accepts this output".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import orjson
from google import genai
from google.genai import types as gtypes


def _headers(stream: bool) -> dict[str, str]:
    return {"content-type": "text/event-stream" if stream else "application/json"}


def _transport(body: bytes, *, stream: bool, status: int = 200) -> httpx.MockTransport:
    """For google-genai, which uses httpx."""
    return httpx.MockTransport(
        lambda _: httpx.Response(status, content=body, headers=_headers(stream))
    )


def _transport2(body: bytes, *, stream: bool, status: int = 200) -> httpx2.MockTransport:
    """For the anthropic and openai SDKs, which use httpx2."""
    return httpx2.MockTransport(
        lambda _: httpx2.Response(status, content=body, headers=_headers(stream))
    )


def _anthropic(body: bytes, *, stream: bool, status: int = 200) -> anthropic.Anthropic:
    http = httpx2.Client(transport=_transport2(body, stream=stream, status=status))
    return anthropic.Anthropic(
        api_key="k", base_url="http://gw.test", http_client=http, max_retries=0
    )


def _openai(body: bytes, *, stream: bool, status: int = 200) -> openai.OpenAI:
    http = httpx2.Client(transport=_transport2(body, stream=stream, status=status))
    return openai.OpenAI(api_key="k", base_url="http://gw.test/v1", http_client=http, max_retries=0)


def _gemini(body: bytes, *, stream: bool, status: int = 200) -> genai.Client:
    http = httpx.Client(transport=_transport(body, stream=stream, status=status))
    options = gtypes.HttpOptions(base_url="http://gw.test", httpx_client=http)
    return genai.Client(api_key="k", http_options=options)


_A_ARGS: dict[str, Any] = {
    "model": "m",
    "max_tokens": 10,
    "messages": [{"role": "user", "content": "hi"}],
}
_O_ARGS: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def anthropic_message(body: dict[str, Any]) -> anthropic.types.Message:
    message: anthropic.types.Message = _anthropic(orjson.dumps(body), stream=False).messages.create(
        **_A_ARGS
    )
    return message


def anthropic_stream(raw: bytes) -> anthropic.types.Message:
    """The final message the SDK's stream helper accumulates from our frames."""
    with _anthropic(raw, stream=True).messages.stream(**_A_ARGS) as stream:
        for _ in stream:
            pass
        return stream.get_final_message()


def anthropic_events(raw: bytes) -> list[Any]:
    return list(_anthropic(raw, stream=True).messages.create(**_A_ARGS, stream=True))


def openai_completion(body: dict[str, Any]) -> openai.types.chat.ChatCompletion:
    completion: openai.types.chat.ChatCompletion = _openai(
        orjson.dumps(body), stream=False
    ).chat.completions.create(**_O_ARGS)
    return completion


def openai_chunks(raw: bytes) -> list[openai.types.chat.ChatCompletionChunk]:
    return list(_openai(raw, stream=True).chat.completions.create(**_O_ARGS, stream=True))


def gemini_response(body: dict[str, Any]) -> gtypes.GenerateContentResponse:
    return _gemini(orjson.dumps(body), stream=False).models.generate_content(
        model="m", contents="hi"
    )


def gemini_chunks(raw: bytes) -> list[gtypes.GenerateContentResponse]:
    return list(_gemini(raw, stream=True).models.generate_content_stream(model="m", contents="hi"))


def sdk_error(call: Callable[[], Any]) -> BaseException:
    """The exception an SDK raised (the test fails if none was)."""
    try:
        call()
    except Exception as err:
        return err
    raise AssertionError("the SDK accepted the output; an error was expected")


def anthropic_error(body: dict[str, Any], status: int) -> BaseException:
    client = _anthropic(orjson.dumps(body), stream=False, status=status)
    return sdk_error(lambda: client.messages.create(**_A_ARGS))


def openai_error(body: dict[str, Any], status: int) -> BaseException:
    client = _openai(orjson.dumps(body), stream=False, status=status)
    return sdk_error(lambda: client.chat.completions.create(**_O_ARGS))


def gemini_error(body: dict[str, Any], status: int) -> BaseException:
    client = _gemini(orjson.dumps(body), stream=False, status=status)
    return sdk_error(lambda: client.models.generate_content(model="m", contents="hi"))
