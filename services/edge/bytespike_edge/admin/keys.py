"""API keys of one account: `/admin/v1/accounts/{account}/keys`.

Every operation names the account and auth checks the key belongs to it: a key id of
another account is 404, exactly like one that does not exist. The plaintext of a key is in
the answer to create and rotate only.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query

from bytespike.auth.v1 import auth_pb2
from bytespike_edge.admin import schemas
from bytespike_edge.admin.accounts import ERRORS as ACCOUNT_ERRORS
from bytespike_edge.admin.catalog import CatalogCheck, model_access
from bytespike_edge.admin.convert import (
    created_key_out,
    key_out,
    limits_in,
    rotated_key_out,
    timestamp,
)
from bytespike_edge.admin.deps import AccountDep, AuthDep, CallerDep, CatalogDep, IndexDep

router = APIRouter(prefix="/admin/v1/accounts/{account}/keys", tags=["keys"])

ERRORS: dict[int | str, dict[str, str]] = {
    **ACCOUNT_ERRORS,
    404: {"description": "No such account, or no such key in it."},
}
KeyId = Annotated[str, Path(description="Key id (`key_…`).")]


@router.get("", summary="List an account's keys", responses=ERRORS)
async def list_keys(
    account: AccountDep,
    auth: AuthDep,
    status: Annotated[Literal["active", "expired", "revoked"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(description="`next_after` of the previous page.")] = None,
) -> schemas.KeyPage:
    reply = await auth.call(
        auth.stub.ListKeys,
        auth_pb2.ListKeysRequest(
            account=account.id, status=status or "", limit=limit, after=after or ""
        ),
    )
    data = [key_out(k) for k in reply.keys]
    return schemas.KeyPage(
        data=data,
        has_more=reply.has_more,
        next_after=data[-1].id if reply.has_more and data else None,
    )


@router.post(
    "",
    status_code=201,
    summary="Create a key (the plaintext is in this answer only)",
    responses={**ERRORS, 409: {"description": "A live key of the account has this name."}},
)
async def create_key(
    body: schemas.KeyCreate,
    account: AccountDep,
    caller: CallerDep,
    auth: AuthDep,
    index: IndexDep,
) -> schemas.CreatedKey:
    # The group sets the price multiplier: an account's own admin keeps the default one.
    if not caller.is_operator and body.group not in (None, account.default_group):
        raise HTTPException(403, "Only the operator may choose a group other than the default.")
    CatalogCheck(index).group(body.group, "group").models(
        body.allowed_models, "allowed_models"
    ).done()
    reply = await auth.call(
        auth.stub.CreateKey,
        auth_pb2.CreateKeyRequest(
            account=account.id,
            name=body.name or "",
            group=body.group or "",
            allowed_models=body.allowed_models,
            limits=limits_in(body.limits),
            expires_at=timestamp(body.expires_at),
        ),
    )
    return created_key_out(reply.key, reply.plaintext)


@router.get("/{key_id}", summary="Show a key", responses=ERRORS)
async def show_key(key_id: KeyId, account: AccountDep, auth: AuthDep) -> schemas.Key:
    return key_out(
        await auth.call(auth.stub.GetKey, auth_pb2.GetKeyRequest(account=account.id, key_id=key_id))
    )


@router.post("/{key_id}/revoke", summary="Revoke a key now", responses=ERRORS)
async def revoke_key(key_id: KeyId, account: AccountDep, auth: AuthDep) -> schemas.Key:
    """Idempotent. Every edge refuses the key from the moment this returns."""
    request = auth_pb2.RevokeKeyRequest(account=account.id, key_id=key_id)
    return key_out(await auth.call(auth.stub.RevokeKey, request))


@router.post(
    "/{key_id}/rotate",
    status_code=201,
    summary="Rotate a key: a new key now, the old one revoked after a grace period",
    responses={**ERRORS, 409: {"description": "The key is not active, or already rotated."}},
)
async def rotate_key(
    key_id: KeyId, account: AccountDep, auth: AuthDep, body: schemas.KeyRotate | None = None
) -> schemas.RotatedKey:
    body = body or schemas.KeyRotate()
    request = auth_pb2.RotateKeyRequest(
        account=account.id,
        key_id=key_id,
        grace_seconds=body.grace_seconds,
        expires_at=timestamp(body.expires_at),
    )
    return rotated_key_out(await auth.call(auth.stub.RotateKey, request))


@router.get(
    "/{key_id}/models",
    summary="The models this key may call (what its /v1/models lists)",
    responses=ERRORS,
)
async def key_models(
    key_id: KeyId,
    account: AccountDep,
    auth: AuthDep,
    index: IndexDep,
    catalog: CatalogDep,
) -> list[schemas.ModelAccess]:
    key = await auth.call(
        auth.stub.GetKey, auth_pb2.GetKeyRequest(account=account.id, key_id=key_id)
    )
    return [
        model_access(index, catalog, model)
        for model in index.table.models
        if index.allowed(model.id, key.group, account.allowed_models, key.allowed_models)
    ]
