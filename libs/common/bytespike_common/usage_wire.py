"""How usage events travel on the `USAGE` stream: one `UsageEvent`, or a `UsageBatch`.

The edge publishes the events of one account that it has ready at once as one message
(`usage.proto` says so): one publish, one ack, one stream entry and one consumer delivery
for all of them. A message carrying a batch says so in a header, so a consumer tells the
two apart without guessing, and messages from edges that publish one event each (older
ones, and traced events, whose span is their own) still read as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bytespike.usage.v1 import usage_pb2

# Header on a batch message; its value is the number of events (for humans and tools).
BATCH_HEADER = "Bytespike-Usage-Batch"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_batch(events: Sequence[bytes]) -> bytes:
    """`UsageBatch(events=…)` from already serialized events, without parsing them again:
    a repeated message field is each element as field 1, length-delimited (wire type 2)."""
    return b"".join(b"\x0a" + _varint(len(data)) + data for data in events)


def batch_id(first_request_id: str, count: int) -> str:
    """`Nats-Msg-Id` of a batch: unique because request ids are, and the same on a retry
    (a batch is re-published as it was formed)."""
    return f"{first_request_id}+{count}"


def decode(data: bytes, headers: Mapping[str, str] | None) -> list[usage_pb2.UsageEvent]:
    """The events a message carries; raises protobuf's `DecodeError` on malformed bytes."""
    if headers and BATCH_HEADER in headers:
        return list(usage_pb2.UsageBatch.FromString(data).events)
    return [usage_pb2.UsageEvent.FromString(data)]
