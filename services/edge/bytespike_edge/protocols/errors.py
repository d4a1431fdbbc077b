"""Errors in the caller's protocol (reference/protocols.md §2.7, §3.6, §5, §10).

The protocol is known from the path, so even a request we cannot parse (or a route that
does not exist) gets an error body its SDK understands. The bodies themselves are the
codecs' (`translate/<protocol>/errors.py`).
"""

from __future__ import annotations

import orjson
from starlette.responses import Response

from bytespike_common.errors import GatewayError
from bytespike_edge.translate.ir import WireProtocol
from bytespike_edge.translate.registry import codec_for


def protocol_for_path(path: str) -> WireProtocol:
    if path.startswith("/v1/messages"):
        return WireProtocol.ANTHROPIC
    if path.startswith("/v1beta") or (path.startswith("/v1/models/") and ":" in path):
        return WireProtocol.GEMINI
    return WireProtocol.OPENAI


def render(protocol: WireProtocol | str, err: GatewayError, request_id: str) -> Response:
    status, body, headers = codec_for(protocol).render_error(err, request_id)
    return Response(orjson.dumps(body), status, headers, media_type="application/json")
