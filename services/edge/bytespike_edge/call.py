"""One request's journey through the edge, and the usage event it ends with.

Every admitted request publishes exactly one usage event, whatever happens after admission
(upstream error, client gone, our bug): `CallContext.finish` is called from a `finally`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from bytespike.auth.v1 import auth_pb2
from bytespike.router.v1 import router_pb2
from bytespike.usage.v1 import usage_pb2
from bytespike_edge.translate.ir import Usage

PROTOCOL_NAMES = {
    router_pb2.PROTOCOL_OPENAI: "openai",
    router_pb2.PROTOCOL_ANTHROPIC: "anthropic",
    router_pb2.PROTOCOL_GEMINI: "gemini",
}


@dataclass(slots=True)
class CallContext:
    request_id: str
    client_protocol: str
    principal: auth_pb2.Principal
    model: router_pb2.Model
    deployment: router_pb2.Deployment
    provider: router_pb2.Provider
    stream: bool
    hold_id: str = ""
    # Admitted from an admission lease: which, and what was reserved from it.
    lease_id: str = ""
    reserved: int = 0
    started_wall: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    first_byte_at: float | None = None
    usage: Usage | None = None
    finish_reason: str = ""
    status_code: int = 0
    error_cause: str = ""
    client_disconnected: bool = False
    attempts: list[usage_pb2.Attempt] = field(default_factory=list)
    # Rough sizes for estimating usage when the upstream reports none.
    request_bytes: int = 0
    frames_relayed: int = 0

    @property
    def upstream_protocol(self) -> str:
        return PROTOCOL_NAMES.get(self.provider.protocol, "")

    def mark_first_byte(self) -> None:
        if self.first_byte_at is None:
            self.first_byte_at = time.perf_counter()

    def estimated_usage(self) -> Usage:
        # ~4 bytes of JSON per prompt token; vendors stream about one token per frame.
        return Usage(
            input_tokens=max(1, self.request_bytes // 4),
            output_tokens=max(0, self.frames_relayed - 2),
            estimated=True,
        )

    def usage_event(self) -> usage_pb2.UsageEvent:
        usage = self.usage
        if usage is None and self.status_code < 400:
            usage = self.estimated_usage()
        ttft = self.first_byte_at - self.started if self.first_byte_at is not None else 0.0
        event = usage_pb2.UsageEvent(
            request_id=self.request_id,
            account_id=self.principal.account_id,
            key_id=self.principal.key_id,
            group=self.principal.group,
            model=self.model.id,
            provider_id=self.provider.id,
            deployment_id=self.deployment.id,
            upstream_model=self.deployment.upstream_model,
            client_protocol=self.client_protocol,
            upstream_protocol=self.upstream_protocol,
            stream=self.stream,
            status_code=self.status_code,
            finish_reason=self.finish_reason,
            error_cause=self.error_cause,
            client_disconnected=self.client_disconnected,
            hold_id=self.hold_id,
            lease_id=self.lease_id,
            reserved=self.reserved,
            ttft_ms=int(ttft * 1000),
        )
        # Sub-messages filled in place: passed to the constructor, each would be built
        # and then copied in (this event is built for every request; ~6 → ~2.5 µs).
        _fill_usage(event.usage, usage or Usage())
        _fill_timestamp(event.started_at, self.started_wall)
        _fill_timestamp(event.finished_at, time.time())
        if self.attempts:
            event.attempts.extend(self.attempts)
        return event


def _fill_timestamp(stamp: Timestamp, seconds: float) -> None:
    # Straight from the float: a datetime round trip costs more than the whole event.
    whole = int(seconds)
    stamp.seconds = whole
    stamp.nanos = int((seconds - whole) * 1e9)


def _fill_usage(message: usage_pb2.Usage, usage: Usage) -> None:
    message.input_tokens = usage.input_tokens
    message.output_tokens = usage.output_tokens
    # Mostly zero: setting a proto3 scalar to its default is a no-op, skipping it is cheaper.
    if usage.cache_read_tokens:
        message.cache_read_tokens = usage.cache_read_tokens
    if usage.cache_write_tokens:
        message.cache_write_tokens = usage.cache_write_tokens
    if usage.reasoning_tokens:
        message.reasoning_tokens = usage.reasoning_tokens
    if usage.estimated:
        message.estimated = True
    message.SetInParent()  # present even when every count is zero, as before
