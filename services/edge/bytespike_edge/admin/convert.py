"""Auth's protobuf messages to the admin API's bodies, and back."""

from __future__ import annotations

import datetime as dt

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from bytespike.auth.v1 import auth_pb2
from bytespike_edge.admin import schemas


def time_of(message: Message, field: str) -> dt.datetime | None:
    if not message.HasField(field):
        return None
    stamp: Timestamp = getattr(message, field)
    return stamp.ToDatetime(dt.UTC)


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(dt.UTC))
    return stamp


def account_out(account: auth_pb2.Account) -> schemas.Account:
    return schemas.Account(
        id=account.id,
        name=account.name,
        status=account.status,
        default_group=account.default_group,
        allowed_models=list(account.allowed_models),
        created_at=time_of(account, "created_at") or dt.datetime.fromtimestamp(0, dt.UTC),
    )


def limits_in(limits: schemas.Limits) -> auth_pb2.Limits:
    return auth_pb2.Limits(rpm=limits.rpm, tpm=limits.tpm, concurrency=limits.concurrency)


def _key_fields(key: auth_pb2.Key) -> dict[str, object]:
    return {
        "id": key.id,
        "account_id": key.account_id,
        "name": key.name,
        "group": key.group,
        "prefix": key.prefix,
        "status": key.status,
        "allowed_models": list(key.allowed_models),
        "limits": schemas.Limits(
            rpm=key.limits.rpm, tpm=key.limits.tpm, concurrency=key.limits.concurrency
        ),
        "created_at": time_of(key, "created_at"),
        "expires_at": time_of(key, "expires_at"),
        "revoke_at": time_of(key, "revoke_at"),
        "revoked_at": time_of(key, "revoked_at"),
        "replaced_by": key.replaced_by or None,
        "rotated_from": key.rotated_from or None,
    }


def key_out(key: auth_pb2.Key) -> schemas.Key:
    return schemas.Key.model_validate(_key_fields(key))


def created_key_out(key: auth_pb2.Key, plaintext: str) -> schemas.CreatedKey:
    return schemas.CreatedKey.model_validate({**_key_fields(key), "plaintext": plaintext})


def rotated_key_out(reply: auth_pb2.RotateKeyResponse) -> schemas.RotatedKey:
    return schemas.RotatedKey.model_validate(
        {
            **_key_fields(reply.key),
            "plaintext": reply.plaintext,
            "previous": key_out(reply.previous),
        }
    )
