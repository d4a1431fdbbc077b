"""The rows settlement writes, field by field, on SQLite (direct statements in aiosqlite's
thread) and PostgreSQL (SQLAlchemy): both build them from one tuple per event."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from bytespike.usage.v1 import usage_pb2
from bytespike_common import db
from bytespike_metering.server import MIGRATIONS, VERSION_TABLE
from bytespike_metering.settlement import (
    Charge,
    _sqlite_started_at,
    _started_at,
    record_charges,
    record_settlements,
)
from bytespike_metering.store import MeteringStore


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[MeteringStore]:
    engine = db.create_engine(database_url)
    await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
    try:
        yield MeteringStore(engine)
    finally:
        await engine.dispose()


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive UTC wall times, PostgreSQL aware ones.
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def test_a_usage_record_keeps_every_field(store: MeteringStore) -> None:
    # A distinct value in every column, so a field written to the wrong one shows.
    event = usage_pb2.UsageEvent(
        request_id="req-fields",
        account_id="acct-f",
        key_id="key-f",
        group="grp",
        model="model-f",
        provider_id="prov",
        deployment_id="dep",
        client_protocol="openai",
        upstream_protocol="anthropic",
        stream=True,
        usage=usage_pb2.Usage(
            input_tokens=11,
            cache_read_tokens=12,
            cache_write_tokens=13,
            output_tokens=14,
            reasoning_tokens=15,
            images=16,
            video_seconds=2.5,
            estimated=True,
        ),
        status_code=499,
        finish_reason="length",
        error_cause="upstream_stream_broken",
        client_disconnected=True,
    )
    started = dt.datetime(2026, 3, 1, 12, 30, 45, 123_456, tzinfo=dt.UTC)
    event.started_at.FromDatetime(started)
    before = dt.datetime.now(dt.UTC)
    new, _ = await record_charges(store, [Charge(event, 17)])
    assert [c.event.request_id for c in new] == ["req-fields"]

    record = await store.usage("req-fields")
    assert record is not None
    recorded_at = _utc(record.pop("recorded_at"))
    assert before - dt.timedelta(seconds=1) <= recorded_at <= dt.datetime.now(dt.UTC)
    assert _utc(record.pop("started_at")) == started
    assert record == {
        "request_id": "req-fields",
        "account_id": "acct-f",
        "key_id": "key-f",
        "group_name": "grp",
        "model": "model-f",
        "provider_id": "prov",
        "deployment_id": "dep",
        "client_protocol": "openai",
        "upstream_protocol": "anthropic",
        "stream": True,
        "input_tokens": 11,
        "cache_read_tokens": 12,
        "cache_write_tokens": 13,
        "output_tokens": 14,
        "reasoning_tokens": 15,
        "images": 16,
        "video_ms": 2500,
        "estimated": True,
        "status_code": 499,
        "finish_reason": "length",
        "error_cause": "upstream_stream_broken",
        "client_disconnected": True,
        "cost": 17,
    }


async def test_a_usage_record_without_a_start_time(store: MeteringStore) -> None:
    event = usage_pb2.UsageEvent(request_id="req-nostart", account_id="acct-f")
    await record_charges(store, [Charge(event, 0)])
    record = await store.usage("req-nostart")
    assert record is not None and record["started_at"] is None


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (1_772_368_245, 123_456_789),  # 2026: sub-microsecond nanos are dropped, not rounded
        (1_772_368_245, 0),  # whole second: the microseconds are still written
        (1_772_368_245, 999_999_999),
        (0, 1_000),  # the epoch
        (-86_399, 500_000),  # before it
        (253_402_300_799, 999_999_000),  # 9999-12-31 23:59:59.999999
    ],
)
def test_sqlite_start_times_are_written_as_sqlalchemy_writes_them(
    sqlite_url: str, seconds: int, nanos: int
) -> None:
    store = MeteringStore(db.create_engine(sqlite_url))
    event = usage_pb2.UsageEvent(request_id="r")
    event.started_at.seconds, event.started_at.nanos = seconds, nanos
    started = _started_at(Charge(event, 0))
    assert started is not None
    assert _sqlite_started_at(event) == store.sqlite_datetime(started)


def test_an_unset_start_time_is_null(sqlite_url: str) -> None:
    assert _sqlite_started_at(usage_pb2.UsageEvent(request_id="r")) is None


def test_settlement_metrics_per_batch() -> None:
    """`record_settlements` moves the same metrics as `telemetry.record_settlement` would
    event by event: credits per model (priced charges only) and one lag per event."""

    def sample(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(f"bytespike_{name}", labels)

    def credits(model: str) -> float:
        return sample("credits_charged_total", model=model) or 0.0

    def lags(le: str) -> float:
        return sample("settlement_lag_seconds_bucket", le=le) or 0.0

    def charge(request_id: str, model: str, cost: int, finished_at: int) -> Charge:
        event = usage_pb2.UsageEvent(request_id=request_id, model=model)
        event.finished_at.seconds = finished_at
        return Charge(event, cost)

    ended = int(time.time()) - 2  # 2-3 s ago
    before = (credits("metrics-a"), credits("metrics-b"), lags("1.0"), lags("5.0"))
    record_settlements(
        [
            charge("r1", "metrics-a", 10, ended),
            charge("r2", "metrics-b", 7, ended),
            charge("r3", "metrics-a", 5, ended),
            charge("r4", "metrics-free", 0, ended),  # unpriced: no label value for it
            charge("r5", "metrics-a", 1, 0),  # no end time: no lag
        ]
    )
    assert credits("metrics-a") - before[0] == 16
    assert credits("metrics-b") - before[1] == 7
    assert sample("credits_charged_total", model="metrics-free") is None
    assert (lags("1.0") - before[2], lags("5.0") - before[3]) == (0, 4)
