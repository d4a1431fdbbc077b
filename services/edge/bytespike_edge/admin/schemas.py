"""The admin API's bodies: what the OpenAPI document shows, with a description per field."""

from __future__ import annotations

import datetime as dt
import decimal
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

# Same rules as the auth store (bytespike_auth.validation), checked here first so a
# malformed request is a 422 naming the field.
AccountName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
    Field(description="Letters, digits, '.', '_' or '-'; 1-128, starting with a letter or digit."),
]
GroupName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^\S+$")]
ModelPattern = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^\S+$")]
KeyName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
MAX_GRACE_SECONDS = 30 * 24 * 3600


def _in_the_future(value: dt.datetime) -> dt.datetime:
    if value <= dt.datetime.now(dt.UTC):
        raise ValueError("must be in the future")
    return value


FutureTime = Annotated[AwareDatetime, AfterValidator(_in_the_future)]

ALLOWED_MODELS_DOC = (
    "Model ids or fnmatch patterns (`claude-*`). Empty = no restriction at this level. "
    "Exact ids must exist in the catalog."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(_Strict):
    rpm: Count = Field(0, description="Requests per minute; 0 = no limit.")
    tpm: Count = Field(0, description="Tokens per minute (input + output); 0 = no limit.")
    concurrency: Count = Field(0, description="Requests in flight at once; 0 = no limit.")


class AccountCreate(_Strict):
    name: AccountName
    default_group: GroupName = Field(
        "default", description="Routing group of keys created without one; a catalog group."
    )
    allowed_models: list[ModelPattern] = Field(
        default_factory=list, description=f"Operator cap over every key. {ALLOWED_MODELS_DOC}"
    )


class AccountUpdate(_Strict):
    name: AccountName | None = Field(None, description="New name (ids never change).")
    default_group: GroupName | None = Field(None, description="See AccountCreate.")
    allowed_models: list[ModelPattern] | None = Field(
        None, description="Replaces the cap; [] removes it."
    )
    status: Literal["active", "disabled"] | None = Field(
        None, description="`disabled` refuses every key of the account at every edge at once."
    )


class Account(BaseModel):
    id: str = Field(description="Stable id (`acct_…`); paths accept it or the name.")
    name: str = Field(description="Unique name.")
    status: Literal["active", "disabled"] = Field(
        description="A disabled account's keys are all refused."
    )
    default_group: str = Field(description="Routing group of keys created without one.")
    allowed_models: list[str] = Field(description="The operator cap; empty = no cap.")
    created_at: dt.datetime


class Policy(_Strict):
    default_group: GroupName = Field("default", description="Group of keys created without one.")
    allowed_models: list[ModelPattern] = Field(
        default_factory=list, description=f"Cap over every key of the account. {ALLOWED_MODELS_DOC}"
    )


class KeyCreate(_Strict):
    name: KeyName | None = Field(
        None, description="Unique among the account's live keys; generated when absent."
    )
    group: GroupName | None = Field(
        None, description="Routing group (catalog); absent = the account's default group."
    )
    allowed_models: list[ModelPattern] = Field(
        default_factory=list, description=f"Key allow-list. {ALLOWED_MODELS_DOC}"
    )
    limits: Limits = Field(default_factory=Limits)
    expires_at: FutureTime | None = Field(
        None, description="RFC 3339 with a time zone; the key stops working then."
    )


class KeyRotate(_Strict):
    grace_seconds: int = Field(
        0,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="Seconds the old key keeps working (0 = revoked at once). The "
        "revocation is stored and fires even across restarts.",
    )
    expires_at: FutureTime | None = Field(
        None, description="Expiry of the new key; absent = the old key's expiry."
    )


class Key(BaseModel):
    id: str = Field(description="Stable id (`key_…`).")
    account_id: str = Field(description="The account the key belongs to.")
    name: str = Field(description="Unique among the account's live keys.")
    group: str = Field(description="Routing group: which models, at which price multiplier.")
    prefix: str = Field(description="First characters of the key, for recognising it.")
    status: Literal["active", "expired", "revoked"]
    allowed_models: list[str] = Field(description="Key allow-list; empty = no restriction.")
    limits: Limits
    created_at: dt.datetime
    expires_at: dt.datetime | None = Field(None, description="When the key stops working.")
    revoke_at: dt.datetime | None = Field(
        None, description="Scheduled revocation (the grace period of a rotation)."
    )
    revoked_at: dt.datetime | None = Field(None, description="When the key was revoked.")
    replaced_by: str | None = Field(None, description="The key this one was rotated into.")
    rotated_from: str | None = Field(None, description="The key this one replaced.")


class CreatedKey(Key):
    plaintext: str = Field(
        description="The API key. Shown this once: the gateway keeps only a keyed hash."
    )


class RotatedKey(CreatedKey):
    previous: Key = Field(description="The old key, revoked now or at `revoke_at`.")


class Page(BaseModel):
    has_more: bool
    next_after: str | None = Field(None, description="Pass as `after` for the next page.")


class AccountPage(Page):
    data: list[Account]


class KeyPage(Page):
    data: list[Key]


class ModelAccess(BaseModel):
    id: str
    display_name: str
    owned_by: str
    available: bool = Field(
        description="False when no provider of the model has a credential in this gateway."
    )


class Group(BaseModel):
    name: str
    model_patterns: list[str]
    price_multiplier: float = Field(description="Applied to every price for keys in the group.")
    models: list[str] = Field(description="Catalog models the patterns match now.")


# -- credits and usage (metering) -----------------------------------------------------------

MICRO_PER_CREDIT = 1_000_000
# One top-up or adjustment at most: keeps every balance far inside the ledger's int64.
MAX_CREDITS = 1_000_000_000
# Wide enough that any amount of at most MAX_CREDITS with 6 decimals scales exactly; a
# longer fraction raises Inexact instead of being rounded.
_EXACT = decimal.Context(prec=64, traps=[decimal.Inexact, decimal.InvalidOperation])


def micro_credits(value: object) -> int:
    """Credits (a decimal string, an integer or a JSON number) as exact micro-credits."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError('must be a number of credits, e.g. 100 or "0.25"')
    # repr() of a float is the shortest text that reads back as it: what the client wrote,
    # up to 15 significant digits. Longer amounts must be strings to be exact.
    text = repr(value) if isinstance(value, float) else str(value).strip()
    try:
        credits = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise ValueError(f"{text[:40]!r} is not a number of credits") from None
    if not credits.is_finite() or abs(credits) > MAX_CREDITS:
        raise ValueError(f"must be a finite number of at most {MAX_CREDITS:,} credits")
    try:
        micro = credits.scaleb(6, _EXACT)
        exact = micro == micro.to_integral_value()
    except decimal.DecimalException:
        exact = False
    if not exact:
        raise ValueError("has more than 6 decimal places (1 micro-credit = 0.000001 credits)")
    return int(micro)


def credits_text(micro: int) -> str:
    """Micro-credits as an exact decimal string of credits: 12500000 → "12.5"."""
    whole, fraction = divmod(abs(micro), MICRO_PER_CREDIT)
    text = f"{whole}.{fraction:06d}".rstrip("0").rstrip(".")
    return f"-{text}" if micro < 0 else text


def _not_zero(micro: int) -> int:
    if micro == 0:
        raise ValueError("cannot be zero")
    return micro


_CREDITS_DOC = (
    'Credits, as a decimal string (exact: `"12.5"`) or a JSON number; at most 6 decimal '
    f"places (1 credit = 1,000,000 micro-credits), at most {MAX_CREDITS:,}."
)
_CREDITS_SCHEMA = WithJsonSchema(
    {
        "anyOf": [{"type": "string"}, {"type": "number"}],
        "description": _CREDITS_DOC,
        "examples": ["100", "0.25"],
    }
)
TopUpCredits = Annotated[int, BeforeValidator(micro_credits), Field(gt=0), _CREDITS_SCHEMA]
AdjustmentCredits = Annotated[
    int, BeforeValidator(micro_credits), AfterValidator(_not_zero), _CREDITS_SCHEMA
]
# What metering's ledger columns hold (reason 512, idempotency key 128 characters).
Reason = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=512, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
    Field(description="Why the credit changes; recorded in the ledger."),
]
IdempotencyKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$"),
    Field(description="Printable ASCII without spaces, 1-128 characters."),
]
_KEY_DOC = (
    "A retry with the same key returns the first result and changes nothing (the same key "
    "for a different operation is 409). Or the `Idempotency-Key` header; generated when "
    "neither is given."
)


class TopUp(_Strict):
    amount: TopUpCredits
    reason: Reason
    idempotency_key: IdempotencyKey | None = Field(None, description=_KEY_DOC)


class Adjustment(_Strict):
    amount: AdjustmentCredits = Field(
        description=f"{_CREDITS_DOC} Signed: a negative amount takes credit away."
    )
    reason: Reason
    idempotency_key: IdempotencyKey | None = Field(None, description=_KEY_DOC)


CreditsText = Annotated[
    str, Field(description="Credits as an exact decimal string.", examples=["12.5"])
]


class Balance(BaseModel):
    account_id: str
    account: str = Field(description="The account's name.")
    balance: CreditsText = Field(description="Sum of the ledger, in credits.")
    balance_micro: int
    held: CreditsText = Field(description="Reserved by requests in flight, in credits.")
    held_micro: int
    available: CreditsText = Field(description="balance - held: what new requests can use.")
    available_micro: int
    updated_at: dt.datetime | None = None


class LedgerEntry(BaseModel):
    id: int = Field(description="Increasing; page with `before`.")
    kind: str = Field(description="`usage`, `top_up`, `adjustment` or `grant`.")
    amount: CreditsText = Field(description="Signed: usage charges are negative.")
    amount_micro: int
    reason: str | None = None
    actor: str | None = Field(None, description="Who made a top-up or adjustment.")
    idempotency_key: str | None = None
    request_id: str | None = Field(None, description="The request a usage charge is for.")
    key_id: str | None = None
    model: str | None = None
    created_at: dt.datetime | None = None


class LedgerPage(BaseModel):
    data: list[LedgerEntry] = Field(description="Newest first.")
    has_more: bool
    next_before: int | None = Field(None, description="Pass as `before` for the next page.")


class CreditResult(BaseModel):
    entry: LedgerEntry
    balance: Balance
    replayed: bool = Field(
        description="True when the idempotency key was used before: nothing changed, and this "
        "is the first result."
    )


UsageDimension = Literal["key", "model", "day"]
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _day_is_midnight_utc(value: object) -> object:
    if isinstance(value, str) and _DAY.match(value.strip()):
        return f"{value.strip()}T00:00:00Z"
    return value


UsageTime = Annotated[AwareDatetime, BeforeValidator(_day_is_midnight_utc)]


class UsageRow(BaseModel):
    key_id: str | None = Field(None, description="When grouped by key.")
    model: str | None = Field(None, description="When grouped by model.")
    day: str | None = Field(None, description="UTC day the requests started, when grouped by day.")
    requests: int
    input_tokens: int = Field(description="Excluding cache reads and writes.")
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int = Field(description="Including reasoning.")
    reasoning_tokens: int
    images: int
    cost: CreditsText
    cost_micro: int


class Usage(BaseModel):
    account_id: str
    since: dt.datetime | None
    until: dt.datetime | None
    group_by: list[UsageDimension]
    data: list[UsageRow] = Field(
        description="One row per combination of the grouped dimensions; without grouping, one "
        "row of totals (none when the account has no usage)."
    )
