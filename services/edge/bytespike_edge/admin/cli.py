"""`bytespike`: the admin CLI, over the admin REST API.

    bytespike keys create --account acme --group claude-default     # prints the key once
    bytespike keys rotate key_… --account acme --grace 1h
    bytespike accounts disable acme
    bytespike credits topup --account acme --amount 100 --reason "invoice 2024-07"
    bytespike usage --account acme --by model --since 7d

Where and as whom: `--url` / `BYTESPIKE_ADMIN_URL` (default http://127.0.0.1:8081) and
`--token` / `BYTESPIKE_ADMIN_TOKEN`. Every command takes `--json` for machine output.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import httpx
import typer

from bytespike_edge.admin.client import AdminClient, AdminError

app = typer.Typer(
    name="bytespike",
    help="ByteSpike Gateway admin CLI: accounts, API keys, policies, credits and usage, over "
    "the admin API.",
    epilog="Example: bytespike keys create --account acme --group claude-default",
    no_args_is_help=True,
)
accounts_app = typer.Typer(help="Accounts and their policies.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of one account.", no_args_is_help=True)
catalog_app = typer.Typer(help="Routing groups and models of the catalog.", no_args_is_help=True)
credits_app = typer.Typer(
    help="Credits of one account: top-ups, adjustments, balance, ledger.", no_args_is_help=True
)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(catalog_app, name="catalog")
app.add_typer(credits_app, name="credits")

JsonOut = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
Account = Annotated[str, typer.Option("--account", "-a", help="Account name or id.")]
Models = Annotated[
    list[str] | None,
    typer.Option("--allow-model", "-m", help="Model id or pattern (repeatable)."),
]
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in `90`, `90s`, `15m`, `12h` or `30d`."""
    match = _DURATION.match(text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 15m, 12h or 30d")
    return int(match.group(1)) * _UNITS[match.group(2)]


@app.callback()
def connect(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="BYTESPIKE_ADMIN_URL", help="Admin API base URL.")
    ] = "http://127.0.0.1:8081",
    token: Annotated[
        str,
        typer.Option(
            envvar="BYTESPIKE_ADMIN_TOKEN", help="Admin bearer token.", show_default=False
        ),
    ] = "",
) -> None:
    ctx.obj = (url, token)


@contextmanager
def _client(ctx: typer.Context) -> Iterator[AdminClient]:
    url, token = ctx.obj
    try:
        with AdminClient(url, token) as client:
            yield client
    except AdminError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except httpx.TransportError as exc:
        typer.echo(f"error: cannot reach the admin API at {url}: {exc}", err=True)
        raise typer.Exit(1) from exc


def _emit(data: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    typer.echo(json.dumps(data, indent=2) if as_json else human(data))


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines) if rows else "(none)"


def _cell(value: Any) -> str:
    if value is None or value == []:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _fields(record: dict[str, Any], names: Sequence[str]) -> str:
    return "\n".join(f"{name + ':':<16}{_cell(record.get(name))}" for name in names)


ACCOUNT_FIELDS = ("id", "name", "status", "default_group", "allowed_models", "created_at")
KEY_FIELDS = (
    "id", "account_id", "name", "prefix", "status", "group", "allowed_models",
    "expires_at", "revoke_at", "revoked_at", "replaced_by", "rotated_from", "created_at",
)  # fmt: skip


def _key_fields(key: dict[str, Any]) -> str:
    limits = key.get("limits") or {}
    rendered = ", ".join(f"{k}={v}" for k, v in limits.items() if v) or "none"
    return _fields(key, KEY_FIELDS) + f"\n{'limits:':<16}{rendered}"


def _show_plaintext(key: dict[str, Any]) -> str:
    return (
        f"Created key {key['id']} ({key['name']}) in account {key['account_id']}, "
        f"group {key['group']}.\n\n    {key['plaintext']}\n\n"
        "This is the only time the key is shown: store it now."
    )


# -- accounts ------------------------------------------------------------------------------


@accounts_app.command("create")
def accounts_create(
    ctx: typer.Context,
    name: str,
    default_group: Annotated[str | None, typer.Option(help="Group of new keys.")] = None,
    allow_model: Models = None,
    as_json: JsonOut = False,
) -> None:
    """Create an account (optionally with a default group and a model cap)."""
    with _client(ctx) as client:
        account = client.create_account(
            name, default_group=default_group, allowed_models=allow_model
        )
    _emit(account, as_json, lambda a: _fields(a, ACCOUNT_FIELDS))


@accounts_app.command("list")
def accounts_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="active or disabled.")] = None,
    as_json: JsonOut = False,
) -> None:
    """List accounts."""
    with _client(ctx) as client:
        accounts = client.list_accounts(status)
    _emit(accounts, as_json, lambda a: _table(a, ("name", "id", "status", "default_group")))


@accounts_app.command("show")
def accounts_show(ctx: typer.Context, account: str, as_json: JsonOut = False) -> None:
    """Show an account."""
    with _client(ctx) as client:
        found = client.get_account(account)
    _emit(found, as_json, lambda a: _fields(a, ACCOUNT_FIELDS))


@accounts_app.command("update")
def accounts_update(
    ctx: typer.Context,
    account: str,
    *,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    default_group: Annotated[str | None, typer.Option(help="Group of new keys.")] = None,
    allow_model: Models = None,
    no_cap: Annotated[bool, typer.Option("--no-cap", help="Remove the model cap.")] = False,
    as_json: JsonOut = False,
) -> None:
    """Rename an account or change its policy (default group, model cap)."""
    models = [] if no_cap else allow_model
    with _client(ctx) as client:
        updated = client.update_account(
            account, name=name, default_group=default_group, allowed_models=models
        )
    _emit(updated, as_json, lambda a: _fields(a, ACCOUNT_FIELDS))


@accounts_app.command("disable")
def accounts_disable(ctx: typer.Context, account: str, as_json: JsonOut = False) -> None:
    """Disable an account: every key of it is refused at once."""
    with _client(ctx) as client:
        updated = client.set_account_status(account, enabled=False)
    _emit(updated, as_json, lambda a: _fields(a, ACCOUNT_FIELDS))


@accounts_app.command("enable")
def accounts_enable(ctx: typer.Context, account: str, as_json: JsonOut = False) -> None:
    """Enable a disabled account."""
    with _client(ctx) as client:
        updated = client.set_account_status(account, enabled=True)
    _emit(updated, as_json, lambda a: _fields(a, ACCOUNT_FIELDS))


# -- keys ----------------------------------------------------------------------------------


def _expiry(expires_in: str | None, expires_at: str | None) -> str | None:
    if expires_in and expires_at:
        raise typer.BadParameter("give --expires-in or --expires-at, not both")
    if expires_in:
        moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=parse_duration(expires_in))
        return moment.isoformat()
    return expires_at


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    *,
    account: Account,
    name: Annotated[str | None, typer.Option(help="Key name (generated if absent).")] = None,
    group: Annotated[str | None, typer.Option(help="Routing group (default: account's).")] = None,
    allow_model: Models = None,
    rpm: Annotated[int, typer.Option(min=0, help="Requests per minute (0 = none).")] = 0,
    tpm: Annotated[int, typer.Option(min=0, help="Tokens per minute (0 = none).")] = 0,
    concurrency: Annotated[int, typer.Option(min=0, help="In flight at once (0 = none).")] = 0,
    expires_in: Annotated[str | None, typer.Option(help="Lifetime: 90m, 12h, 30d.")] = None,
    expires_at: Annotated[str | None, typer.Option(help="RFC 3339 expiry.")] = None,
    as_json: JsonOut = False,
) -> None:
    """Create a key. The key itself is printed once, now."""
    with _client(ctx) as client:
        key = client.create_key(
            account,
            name=name,
            group=group,
            allowed_models=allow_model,
            limits={"rpm": rpm, "tpm": tpm, "concurrency": concurrency},
            expires_at=_expiry(expires_in, expires_at),
        )
    _emit(key, as_json, _show_plaintext)


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    account: Account,
    status: Annotated[str | None, typer.Option(help="active, expired or revoked.")] = None,
    as_json: JsonOut = False,
) -> None:
    """List an account's keys (never the keys themselves: only their prefixes)."""
    with _client(ctx) as client:
        keys = client.list_keys(account, status)
    columns = ("id", "name", "prefix", "status", "group", "expires_at")
    _emit(keys, as_json, lambda k: _table(k, columns))


@keys_app.command("show")
def keys_show(ctx: typer.Context, key_id: str, account: Account, as_json: JsonOut = False) -> None:
    """Show a key."""
    with _client(ctx) as client:
        key = client.get_key(account, key_id)
    _emit(key, as_json, _key_fields)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context, key_id: str, account: Account, as_json: JsonOut = False
) -> None:
    """Revoke a key now; every edge refuses it within a second."""
    with _client(ctx) as client:
        key = client.revoke_key(account, key_id)
    _emit(key, as_json, _key_fields)


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    key_id: str,
    account: Account,
    grace: Annotated[str, typer.Option(help="How long the old key keeps working: 0, 1h…")] = "0",
    as_json: JsonOut = False,
) -> None:
    """Issue a new key with the same settings; revoke the old one after the grace period."""
    seconds = parse_duration(grace)
    with _client(ctx) as client:
        rotated = client.rotate_key(account, key_id, grace_seconds=seconds)

    def human(result: dict[str, Any]) -> str:
        previous = result["previous"]
        until = previous.get("revoke_at") or "now"
        return f"{_show_plaintext(result)}\nThe old key {previous['id']} is revoked {until}."

    _emit(rotated, as_json, human)


@keys_app.command("models")
def keys_models(
    ctx: typer.Context, key_id: str, account: Account, as_json: JsonOut = False
) -> None:
    """The models a key may call."""
    with _client(ctx) as client:
        models = client.key_models(account, key_id)
    _emit(models, as_json, lambda m: _table(m, ("id", "owned_by", "available")))


# -- credits and usage ---------------------------------------------------------------------

Amount = Annotated[
    str,
    typer.Option(
        help="Credits, exact to 6 decimal places: 100, 0.25 (adjust: -5 takes credit away)."
    ),
]
Reason = Annotated[str, typer.Option(help="Why; recorded in the ledger.")]
IdempotencyKey = Annotated[
    str | None,
    typer.Option(help="Running the command again with the same key changes nothing."),
]
BALANCE_FIELDS = ("account", "account_id", "balance", "held", "available", "updated_at")
LEDGER_COLUMNS = ("id", "created_at", "kind", "amount", "reason", "actor", "key_id", "model")
_USAGE_FIELDS = {"key": "key_id", "model": "model", "day": "day"}
USAGE_COLUMNS = (
    "requests", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens",
    "reasoning_tokens", "images", "cost",
)  # fmt: skip


def _credited(result: dict[str, Any]) -> str:
    entry, balance = result["entry"], result["balance"]
    done = (
        f"Already done (idempotency key {entry['idempotency_key']}): nothing changed."
        if result["replayed"]
        else f"{entry['kind']} of {entry['amount']} credits on {balance['account']}."
    )
    return (
        f"{done}\nLedger entry {entry['id']}: {entry['reason']}\n"
        f"Balance {balance['balance']}, held {balance['held']}, available {balance['available']}."
    )


def _ledger(page: dict[str, Any]) -> str:
    more = f"\n(more: --before {page['next_before']})" if page["has_more"] else ""
    return _table(page["data"], LEDGER_COLUMNS) + more


def _moment(text: str | None) -> str | None:
    """`7d`, `12h` (that long ago), a day (YYYY-MM-DD, UTC) or an RFC 3339 time."""
    if text is None or not _DURATION.match(text.strip()):
        return text
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=parse_duration(text))
    return moment.isoformat()


@credits_app.command("topup")
def credits_topup(
    ctx: typer.Context,
    *,
    account: Account,
    amount: Amount,
    reason: Reason,
    idempotency_key: IdempotencyKey = None,
    as_json: JsonOut = False,
) -> None:
    """Add credit to an account (operator)."""
    with _client(ctx) as client:
        result = client.top_up(account, amount, reason, idempotency_key)
    _emit(result, as_json, _credited)


@credits_app.command("adjust")
def credits_adjust(
    ctx: typer.Context,
    *,
    account: Account,
    amount: Amount,
    reason: Reason,
    idempotency_key: IdempotencyKey = None,
    as_json: JsonOut = False,
) -> None:
    """Correct an account's balance up or down (operator)."""
    with _client(ctx) as client:
        result = client.adjust(account, amount, reason, idempotency_key)
    _emit(result, as_json, _credited)


@credits_app.command("balance")
def credits_balance(ctx: typer.Context, account: Account, as_json: JsonOut = False) -> None:
    """An account's balance, what requests in flight hold, and what is available."""
    with _client(ctx) as client:
        balance = client.balance(account)
    _emit(balance, as_json, lambda b: _fields(b, BALANCE_FIELDS))


@credits_app.command("ledger")
def credits_ledger(
    ctx: typer.Context,
    account: Account,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Entries per page.")] = 20,
    before: Annotated[int | None, typer.Option(min=1, help="Entries older than this id.")] = None,
    as_json: JsonOut = False,
) -> None:
    """An account's ledger, newest first: usage charges, top-ups, adjustments, grants."""
    with _client(ctx) as client:
        page = client.ledger(account, limit, before)
    _emit(page, as_json, _ledger)


@app.command("usage")
def usage(
    ctx: typer.Context,
    *,
    account: Account,
    by: Annotated[
        list[str] | None,
        typer.Option(help="key, model or day (repeatable, or comma-separated)."),
    ] = None,
    since: Annotated[str | None, typer.Option(help="From: 7d, 12h, YYYY-MM-DD, RFC 3339.")] = None,
    until: Annotated[str | None, typer.Option(help="Before (exclusive), same forms.")] = None,
    as_json: JsonOut = False,
) -> None:
    """An account's settled usage: requests, tokens and cost, by key, model and/or UTC day."""
    dimensions = [name.strip() for value in by or [] for name in value.split(",")]
    with _client(ctx) as client:
        report = client.usage(account, dimensions, _moment(since), _moment(until))
    columns = [*(_USAGE_FIELDS[name] for name in report["group_by"]), *USAGE_COLUMNS]
    _emit(report, as_json, lambda r: _table(r["data"], columns))


# -- catalog -------------------------------------------------------------------------------


@catalog_app.command("groups")
def catalog_groups(ctx: typer.Context, as_json: JsonOut = False) -> None:
    """Routing groups: patterns, price multiplier, matching models."""
    with _client(ctx) as client:
        groups = client.groups()
    _emit(groups, as_json, lambda g: _table(g, ("name", "price_multiplier", "model_patterns")))


@catalog_app.command("models")
def catalog_models(ctx: typer.Context, as_json: JsonOut = False) -> None:
    """Catalog models and whether their provider has a credential here."""
    with _client(ctx) as client:
        models = client.models()
    _emit(models, as_json, lambda m: _table(m, ("id", "owned_by", "available")))


def main() -> None:
    app()
