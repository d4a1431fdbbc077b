"""Records to protobuf messages (and the few conversions back)."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from bytespike.auth.v1 import auth_pb2
from bytespike_auth.records import AccountRecord, KeyLimits, KeyRecord, PrincipalRecord


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def limits_message(limits: KeyLimits) -> auth_pb2.Limits:
    return auth_pb2.Limits(rpm=limits.rpm, tpm=limits.tpm, concurrency=limits.concurrency)


def limits_from(message: auth_pb2.Limits) -> KeyLimits:
    return KeyLimits(rpm=message.rpm, tpm=message.tpm, concurrency=message.concurrency)


def account_message(record: AccountRecord) -> auth_pb2.Account:
    return auth_pb2.Account(
        id=record.id,
        name=record.name,
        status=record.status,
        default_group=record.default_group,
        allowed_models=record.allowed_models,
        created_at=timestamp(record.created_at),
    )


def key_message(record: KeyRecord) -> auth_pb2.Key:
    return auth_pb2.Key(
        id=record.id,
        account_id=record.account_id,
        name=record.name,
        group=record.group,
        prefix=record.prefix,
        status=record.status,
        allowed_models=record.allowed_models,
        limits=limits_message(record.limits),
        created_at=timestamp(record.created_at),
        expires_at=timestamp(record.expires_at),
        revoke_at=timestamp(record.revoke_at),
        revoked_at=timestamp(record.revoked_at),
        replaced_by=record.replaced_by,
        rotated_from=record.rotated_from,
    )


def principal_message(record: PrincipalRecord) -> auth_pb2.Principal:
    key, account = record.key, record.account
    return auth_pb2.Principal(
        account_id=account.id,
        account_name=account.name,
        key_id=key.id,
        key_name=key.name,
        group=key.group,
        account_allowed_models=account.allowed_models,
        key_allowed_models=key.allowed_models,
        limits=limits_message(key.limits),
        expires_at=timestamp(key.expires_at),
        revoke_at=timestamp(key.revoke_at),
    )
