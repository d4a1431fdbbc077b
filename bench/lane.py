"""The edge's own Python for one whole answer, in-process: `python -m bench.lane`.

`EdgeApp` is called straight through ASGI for `POST /v1/chat/completions` (an OpenAI
passthrough of the shipped catalog's `gpt-5-5`), with authentication, admission, the usage
publisher and the upstream all answering at once from memory. What is measured is what the
edge adds on top of a bare proxy's work, without sockets, other processes or uvicorn:
the request's parse and validation, routing, the exchange, failover and breakers, the
usage event, metrics and the answer. Prints the CPU per request of the fastest and the
median of `--repeats` runs of `--requests` each; `--profile N` then prints cProfile's
top N functions by own time.

On 2026-12-07 this read 54.2 µs a request at c73ea70 and 41.4 to 42.3 after the fifth session's
changes, and the side-by-side runs of the real edge (`bench.ab`) moved about as much:
a change found here is worth measuring there.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import uvloop
from starlette.types import Message

from bytespike.auth.v1 import auth_pb2
from bytespike.usage.v1 import usage_pb2
from bytespike_common.routing import RouteIndex
from bytespike_edge.app import create_app
from bytespike_edge.control.metering import Admission
from bytespike_edge.fastlane import EdgeApp
from bytespike_edge.gateway import Gateway
from bytespike_edge.observability import TimedUpstream
from bytespike_edge.settings import Settings
from bytespike_edge.upstream.client import Timeouts
from bytespike_router.catalog import load_catalog
from bytespike_router.routes import build_route_table

CATALOG = Path(__file__).resolve().parent.parent / "catalog" / "catalog.yaml"
ENVIRON = {"OPENAI_API_KEY": "bench-upstream-credential"}
BODY = orjson.dumps(
    {
        "model": "gpt-5-5",
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 32,
    }
)
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-5.5",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there, how are you?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 9,
            "total_tokens": 21,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
)
HEADERS = [
    (b"host", b"edge"),
    (b"content-type", b"application/json"),
    (b"authorization", b"Bearer sk-byts-bench"),
    (b"content-length", str(len(BODY)).encode()),
]


class _Answer:
    status_code = 200
    headers = {"content-type": "application/json"}

    async def aread(self) -> bytes:
        return ANSWER

    async def aclose(self) -> None:
        return None


class _Upstream:
    async def send(self, url: str, headers: Any, body: bytes, timeouts: Timeouts) -> _Answer:
        return _Answer()

    async def aclose(self) -> None:
        return None


class _Authenticator:
    principal = auth_pb2.Principal(account_id="acct_bench", key_id="key_bench", group="default")

    async def authenticate(self, key: str | None) -> auth_pb2.Principal:
        return self.principal


class _Admitter:
    async def admit(self, request_id: str, principal: Any, model: str, **_: Any) -> Admission:
        return Admission("", True, "lease_bench", 100)


class _Usage:
    pending = 0
    published = 0
    submitted = 0

    def check_capacity(self) -> None:
        return None

    def submit(self, event: usage_pb2.UsageEvent) -> None:
        self.submitted += 1


def build() -> tuple[EdgeApp, _Usage]:
    settings = Settings(key_hash_secret="bench-lane-secret-0123456789")
    app = create_app(settings)
    assert isinstance(app, EdgeApp)
    usage = _Usage()
    index = RouteIndex(build_route_table(load_catalog(CATALOG, ENVIRON)))
    app.state.gateway = Gateway(
        settings,
        authenticator=_Authenticator(),  # type: ignore[arg-type]
        routes=SimpleNamespace(index=index),  # type: ignore[arg-type]
        admitter=_Admitter(),  # type: ignore[arg-type]
        upstream=TimedUpstream(_Upstream()),  # type: ignore[arg-type]
        usage=usage,  # type: ignore[arg-type]
        environ=ENVIRON,
    )
    return app, usage


async def serve_one(app: EdgeApp) -> list[Message]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": HEADERS,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def measure(requests: int, repeats: int, profile: int = 0) -> dict[str, float]:
    app, usage = build()
    sent = await serve_one(app)
    if sent[0]["status"] != 200 or orjson.loads(sent[1]["body"]) != orjson.loads(ANSWER):
        raise RuntimeError(f"the lane did not answer as the upstream did: {sent}")
    runs = []
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(requests):
            await serve_one(app)
        runs.append((time.process_time() - started) / requests * 1e6)
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(requests):
            await serve_one(app)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)
    return {
        "min_us": round(min(runs), 2),
        "median_us": round(statistics.median(runs), 2),
        "usage_events": usage.submitted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--profile", type=int, default=0, help="then cProfile's top N")
    args = parser.parse_args()
    result = uvloop.run(measure(args.requests, args.repeats, args.profile))
    print(
        f"the lane in-process: {result['min_us']} µs a request (fastest of {args.repeats}), "
        f"median {result['median_us']}"
    )


if __name__ == "__main__":
    main()
