"""Accounts and their policies: `/admin/v1/accounts`.

Creating, listing, changing and disabling accounts needs the operator token; an
account-scoped token may read its own account and policy. Disabling an account (or changing
its cap) invalidates the cached principals of all its keys at every edge before answering.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from bytespike.auth.v1 import auth_pb2
from bytespike_edge.admin import schemas
from bytespike_edge.admin.catalog import CatalogCheck
from bytespike_edge.admin.convert import account_out
from bytespike_edge.admin.deps import AccountDep, AuthDep, IndexDep, OperatorDep

router = APIRouter(prefix="/admin/v1/accounts", tags=["accounts"])

ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "No or wrong admin token."},
    403: {"description": "The token may not do this (scoped token, other account)."},
    404: {"description": "No such account."},
    429: {"description": "Too many failed admin logins from this address."},
}


@router.get("", summary="List accounts", responses=ERRORS)
async def list_accounts(
    _: OperatorDep,
    auth: AuthDep,
    status: Annotated[Literal["active", "disabled"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(description="`next_after` of the previous page.")] = None,
) -> schemas.AccountPage:
    reply = await auth.call(
        auth.stub.ListAccounts,
        auth_pb2.ListAccountsRequest(status=status or "", limit=limit, after=after or ""),
    )
    data = [account_out(a) for a in reply.accounts]
    return schemas.AccountPage(
        data=data,
        has_more=reply.has_more,
        next_after=data[-1].id if reply.has_more and data else None,
    )


@router.post(
    "",
    status_code=201,
    summary="Create an account",
    responses={**ERRORS, 409: {"description": "The name is taken."}},
)
async def create_account(
    body: schemas.AccountCreate, _: OperatorDep, auth: AuthDep, index: IndexDep
) -> schemas.Account:
    CatalogCheck(index).group(body.default_group, "default_group").models(
        body.allowed_models, "allowed_models"
    ).done()
    account = await auth.call(
        auth.stub.CreateAccount,
        auth_pb2.CreateAccountRequest(
            name=body.name, default_group=body.default_group, allowed_models=body.allowed_models
        ),
    )
    return account_out(account)


@router.get("/{account}", summary="Show an account", responses=ERRORS)
async def show_account(account: AccountDep) -> schemas.Account:
    return account_out(account)


async def _update(
    auth: AuthDep,
    account: auth_pb2.Account,
    *,
    name: str | None = None,
    default_group: str | None = None,
    allowed_models: list[str] | None = None,
    status: str | None = None,
) -> schemas.Account:
    """Only the given fields change (proto3 presence carries "not given")."""
    request = auth_pb2.UpdateAccountRequest(
        account=account.id, name=name, default_group=default_group, status=status
    )
    if allowed_models is not None:
        request.allowed_models.CopyFrom(auth_pb2.ModelList(models=allowed_models))
    return account_out(await auth.call(auth.stub.UpdateAccount, request))


@router.patch(
    "/{account}",
    summary="Rename an account, change its policy or status",
    responses={**ERRORS, 409: {"description": "The new name is taken."}},
)
async def update_account(
    body: schemas.AccountUpdate,
    account: AccountDep,
    _: OperatorDep,
    auth: AuthDep,
    index: IndexDep,
) -> schemas.Account:
    CatalogCheck(index).group(body.default_group, "default_group").models(
        body.allowed_models, "allowed_models"
    ).done()
    return await _update(
        auth,
        account,
        name=body.name,
        default_group=body.default_group,
        allowed_models=body.allowed_models,
        status=body.status,
    )


@router.post("/{account}/disable", summary="Disable an account", responses=ERRORS)
async def disable_account(account: AccountDep, _: OperatorDep, auth: AuthDep) -> schemas.Account:
    """Every key of the account is refused at every edge from the moment this returns."""
    return await _update(auth, account, status="disabled")


@router.post("/{account}/enable", summary="Enable a disabled account", responses=ERRORS)
async def enable_account(account: AccountDep, _: OperatorDep, auth: AuthDep) -> schemas.Account:
    return await _update(auth, account, status="active")


@router.get("/{account}/policy", summary="Show an account's policy", responses=ERRORS)
async def show_policy(account: AccountDep) -> schemas.Policy:
    return schemas.Policy(
        default_group=account.default_group, allowed_models=list(account.allowed_models)
    )


@router.put("/{account}/policy", summary="Replace an account's policy", responses=ERRORS)
async def replace_policy(
    body: schemas.Policy, account: AccountDep, _: OperatorDep, auth: AuthDep, index: IndexDep
) -> schemas.Policy:
    """The cap applies to every key of the account at once (cached principals are dropped);
    the default group applies to keys created from now on."""
    CatalogCheck(index).group(body.default_group, "default_group").models(
        body.allowed_models, "allowed_models"
    ).done()
    updated = await _update(
        auth, account, default_group=body.default_group, allowed_models=body.allowed_models
    )
    return schemas.Policy(
        default_group=updated.default_group, allowed_models=updated.allowed_models
    )
