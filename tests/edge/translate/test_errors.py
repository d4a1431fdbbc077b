"""Error conversion (reference §10, §11 cases 36, 45-47): upstream error bodies are read by
the upstream codec and rendered in the client's format with the right status."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson
import pytest
from google.genai import errors as gerrors

from bytespike_common.errors import (
    GatewayError,
    InsufficientCredit,
    InvalidRequest,
    NotFound,
    RateLimited,
    RequestTooLarge,
)
from bytespike_edge.translate.registry import codec_for
from tests.edge.translate import sdk
from tests.edge.translate.helpers import translate


def a_body(kind: str, message: str = "boom") -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}


def o_body(kind: str, code: str | None = None, message: str = "boom") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def g_body(
    status: int, name: str, message: str = "boom", details: list[Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": name}
    if details is not None:
        error["details"] = details
    return {"error": error}


UPSTREAM_BODIES: dict[int, dict[str, dict[str, Any]]] = {
    400: {
        "anthropic": a_body("invalid_request_error"),
        "openai": o_body("invalid_request_error", "invalid_value"),
        "gemini": g_body(400, "INVALID_ARGUMENT"),
    },
    401: {
        "anthropic": a_body("authentication_error"),
        "openai": o_body("invalid_request_error", "invalid_api_key"),
        "gemini": g_body(401, "UNAUTHENTICATED"),
    },
    403: {
        "anthropic": a_body("permission_error"),
        "openai": o_body("permission_error"),
        "gemini": g_body(403, "PERMISSION_DENIED"),
    },
    404: {
        "anthropic": a_body("not_found_error"),
        "openai": o_body("invalid_request_error", "model_not_found"),
        "gemini": g_body(404, "NOT_FOUND"),
    },
    413: {
        "anthropic": a_body("request_too_large"),
        "openai": o_body("invalid_request_error"),
        "gemini": g_body(413, "INVALID_ARGUMENT"),
    },
    429: {
        "anthropic": a_body("rate_limit_error"),
        "openai": o_body("requests", "rate_limit_exceeded"),
        "gemini": g_body(429, "RESOURCE_EXHAUSTED"),
    },
    500: {
        "anthropic": a_body("api_error"),
        "openai": o_body("server_error"),
        "gemini": g_body(500, "INTERNAL"),
    },
    503: {
        "anthropic": a_body("api_error"),
        "openai": o_body("server_error"),
        "gemini": g_body(503, "UNAVAILABLE"),
    },
    529: {
        "anthropic": a_body("overloaded_error"),
        "openai": o_body("server_error"),
        "gemini": g_body(529, "UNAVAILABLE"),
    },
}

# upstream status → (A status, A error.type), (O status, O type, O code), (G status, G status)
EXPECTED: dict[int, tuple[tuple[int, str], tuple[int, str, str | None], tuple[int, str]]] = {
    400: (
        (400, "invalid_request_error"),
        (400, "invalid_request_error", None),
        (400, "INVALID_ARGUMENT"),
    ),
    401: (
        (401, "authentication_error"),
        (401, "invalid_request_error", "invalid_api_key"),
        (401, "UNAUTHENTICATED"),
    ),
    403: ((403, "permission_error"), (403, "permission_error", None), (403, "PERMISSION_DENIED")),
    404: (
        (404, "not_found_error"),
        (404, "invalid_request_error", "model_not_found"),
        (404, "NOT_FOUND"),
    ),
    413: (
        (413, "request_too_large"),
        (413, "invalid_request_error", "request_too_large"),
        (400, "INVALID_ARGUMENT"),
    ),
    429: (
        (429, "rate_limit_error"),
        (429, "rate_limit_exceeded", "rate_limit_exceeded"),
        (429, "RESOURCE_EXHAUSTED"),
    ),
    500: ((500, "api_error"), (500, "server_error", None), (500, "INTERNAL")),
    503: ((529, "overloaded_error"), (503, "server_error", "overloaded"), (503, "UNAVAILABLE")),
    529: ((529, "overloaded_error"), (503, "server_error", "overloaded"), (503, "UNAVAILABLE")),
}

CASES = [
    pytest.param(status, upstream, id=f"{upstream}-{status}")
    for status in EXPECTED
    for upstream in ("anthropic", "openai", "gemini")
]


def upstream_error(
    upstream: str, status: int, headers: dict[str, str] | None = None
) -> GatewayError:
    body = orjson.dumps(UPSTREAM_BODIES[status][upstream])
    return codec_for(upstream).decode_error(status, body, headers or {})


@pytest.mark.parametrize(("status", "upstream"), CASES)
def test_case_45_status_matrix(status: int, upstream: str) -> None:
    err = upstream_error(upstream, status)
    (a_status, a_type), (o_status, o_type, o_code), (g_status, g_name) = EXPECTED[status]
    code = "invalid_value" if (status, upstream) == (400, "openai") else o_code

    got_a = codec_for("anthropic").render_error(err, "req_gw")
    assert got_a[:2] == (
        a_status,
        {"type": "error", "error": {"type": a_type, "message": "boom"}, "request_id": "req_gw"},
    )
    got_o = codec_for("openai").render_error(err)
    assert got_o[:2] == (
        o_status,
        {"error": {"message": "boom", "type": o_type, "param": None, "code": code}},
    )
    got_g = codec_for("gemini").render_error(err)
    assert got_g[:2] == (
        g_status,
        {"error": {"code": g_status, "message": "boom", "status": g_name}},
    )


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503, 529])
def test_rendered_errors_are_understood_by_the_sdks(status: int) -> None:
    err = upstream_error("gemini", status)
    a_status, a_body_, _ = codec_for("anthropic").render_error(err)
    a_err = sdk.anthropic_error(a_body_, a_status)
    assert isinstance(a_err, anthropic.APIStatusError) and a_err.status_code == a_status
    if status in (503, 529):
        assert isinstance(a_err, anthropic.OverloadedError)
    o_status, o_body_, _ = codec_for("openai").render_error(err)
    o_err = sdk.openai_error(o_body_, o_status)
    assert isinstance(o_err, openai.APIStatusError) and o_err.status_code == o_status
    assert o_err.body == o_body_["error"]
    g_status, g_body_, _ = codec_for("gemini").render_error(err)
    g_err = sdk.gemini_error(g_body_, g_status)
    assert isinstance(g_err, gerrors.APIError) and g_err.code == g_status


def test_case_45_gemini_bad_key_is_a_401() -> None:
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
        }
    ]
    body = orjson.dumps(g_body(400, "INVALID_ARGUMENT", "API key not valid.", details))
    err = codec_for("gemini").decode_error(400, body, {})
    assert codec_for("anthropic").render_error(err)[:2] == (
        401,
        {
            "type": "error",
            "error": {"type": "authentication_error", "message": "API key not valid."},
        },
    )
    assert codec_for("openai").render_error(err)[0] == 401


def test_case_46_gemini_retry_info_becomes_retry_after() -> None:
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaId": "PerMinute"}],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "47s"},
    ]
    err = codec_for("gemini").decode_error(
        429, orjson.dumps(g_body(429, "RESOURCE_EXHAUSTED", "quota", details)), {}
    )
    assert err.retry_after == 47.0
    assert codec_for("anthropic").render_error(err, "req_1")[2] == {
        "request-id": "req_1",
        "retry-after": "47",
    }
    assert codec_for("openai").render_error(err, "req_1")[2] == {
        "x-request-id": "req_1",
        "retry-after": "47",
    }


@pytest.mark.parametrize("headers", [{"retry-after": "30"}, {"Retry-After-Ms": "30000"}])
def test_case_46_retry_after_becomes_retry_info(headers: dict[str, str]) -> None:
    err = upstream_error("anthropic", 429, headers)
    assert codec_for("gemini").render_error(err)[1] == {
        "error": {
            "code": 429,
            "message": "boom",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}],
        }
    }


def test_case_46_insufficient_quota_is_not_retryable() -> None:
    body = orjson.dumps(
        o_body("insufficient_quota", "insufficient_quota", "You exceeded your quota")
    )
    err = codec_for("openai").decode_error(429, body, {})
    status, rendered, headers = codec_for("openai").render_error(err)
    assert (status, rendered["error"]["code"], headers) == (
        429,
        "insufficient_quota",
        {"x-should-retry": "false"},
    )
    a_status, a_rendered, a_headers = codec_for("anthropic").render_error(err)
    assert (a_status, a_rendered["error"]["type"], a_headers) == (
        402,
        "billing_error",
        {"x-should-retry": "false"},
    )
    assert codec_for("gemini").render_error(InsufficientCredit("no credit"))[0] == 429


@pytest.mark.parametrize(
    ("upstream", "status", "body"),
    [
        (
            "openai",
            400,
            o_body(
                "invalid_request_error",
                "context_length_exceeded",
                "This model's maximum context length is 128000 tokens.",
            ),
        ),
        (
            "gemini",
            400,
            g_body(
                400,
                "INVALID_ARGUMENT",
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            ),
        ),
        (
            "anthropic",
            400,
            a_body("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
        ),
    ],
)
def test_case_47_context_overflow_wording_for_anthropic_clients(
    upstream: str, status: int, body: dict[str, Any]
) -> None:
    err = codec_for(upstream).decode_error(status, orjson.dumps(body), {})
    a_status, a_rendered, _ = codec_for("anthropic").render_error(err)
    assert a_status == 400
    assert a_rendered["error"]["type"] == "invalid_request_error"
    assert "prompt is too long" in a_rendered["error"]["message"]
    assert a_rendered["error"]["message"].count("prompt is too long") == 1
    assert codec_for("openai").render_error(err)[1]["error"]["code"] == "context_length_exceeded"


def test_non_json_upstream_error_body() -> None:
    err = codec_for("openai").decode_error(502, b"<html>Bad Gateway</html>", {})
    assert (err.status, err.message) == (502, "Upstream error 502: <html>Bad Gateway</html>")
    assert codec_for("anthropic").render_error(err)[:2] == (
        502,
        {"type": "error", "error": {"type": "api_error", "message": err.message}},
    )
    assert codec_for("gemini").render_error(err)[1]["error"] == {
        "code": 502,
        "message": err.message,
        "status": "UNAVAILABLE",
    }


@pytest.mark.parametrize(
    ("err", "a", "o", "g"),
    [
        (
            InvalidRequest("bad", param="messages"),
            (400, "invalid_request_error"),
            (400, "invalid_request_error"),
            (400, "INVALID_ARGUMENT"),
        ),
        (
            NotFound("no model", code="model_not_found"),
            (404, "not_found_error"),
            (404, "invalid_request_error"),
            (404, "NOT_FOUND"),
        ),
        (
            RequestTooLarge("big"),
            (413, "request_too_large"),
            (413, "invalid_request_error"),
            (400, "INVALID_ARGUMENT"),
        ),
        (
            RateLimited("slow down", retry_after=2.4),
            (429, "rate_limit_error"),
            (429, "rate_limit_exceeded"),
            (429, "RESOURCE_EXHAUSTED"),
        ),
    ],
)
def test_gateway_errors_render_per_protocol(
    err: GatewayError, a: tuple[int, str], o: tuple[int, str], g: tuple[int, str]
) -> None:
    a_status, a_body_, _ = codec_for("anthropic").render_error(err)
    o_status, o_body_, _ = codec_for("openai").render_error(err)
    g_status, g_body_, _ = codec_for("gemini").render_error(err)
    assert (a_status, a_body_["error"]["type"]) == a
    assert (o_status, o_body_["error"]["type"]) == o
    assert o_body_["error"]["param"] == err.param
    assert (g_status, g_body_["error"]["status"]) == g


def test_case_36_unsupported_modality_renders_as_a_client_400() -> None:
    body = {
        "model": "g",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}
                ],
            }
        ],
    }
    with pytest.raises(InvalidRequest) as caught:
        translate("openai", "anthropic", body)
    status, rendered, _ = codec_for("openai").render_error(caught.value)
    assert (status, rendered["error"]["type"], rendered["error"]["param"]) == (
        400,
        "invalid_request_error",
        "messages",
    )
