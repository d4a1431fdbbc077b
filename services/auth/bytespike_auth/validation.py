"""Input rules the store enforces for every caller (gRPC, seeding, tests)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from bytespike_auth.records import Invalid, KeyLimits

MAX_NAME = 128
MAX_PATTERN = 256
MAX_PATTERNS = 1000
# Account names appear in admin URLs and CLI arguments: keep them path- and shell-safe.
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Large enough for any real limit; small enough for a 32-bit SQL INTEGER column.
MAX_LIMIT = 2**31 - 1


def name(value: str, what: str = "name") -> str:
    value = value.strip()
    if not value or len(value) > MAX_NAME:
        raise Invalid(f"{what} must be 1-{MAX_NAME} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise Invalid(f"{what} must not contain control characters")
    return value


def account_name(value: str) -> str:
    if not ACCOUNT_NAME.match(value):
        raise Invalid(
            "account name must be 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def patterns(values: Iterable[str], what: str = "allowed_models") -> list[str]:
    """Model ids or fnmatch patterns; duplicates dropped, order kept."""
    cleaned: list[str] = []
    for raw in values:
        value = raw.strip()
        if not value or len(value) > MAX_PATTERN or any(c.isspace() for c in value):
            raise Invalid(f"{what}: {raw!r} is not a model id or pattern")
        if value not in cleaned:
            cleaned.append(value)
    if len(cleaned) > MAX_PATTERNS:
        raise Invalid(f"{what}: at most {MAX_PATTERNS} entries")
    return cleaned


def limits(value: KeyLimits) -> KeyLimits:
    for field_name in ("rpm", "tpm", "concurrency"):
        number = getattr(value, field_name)
        if not 0 <= number <= MAX_LIMIT:
            raise Invalid(f"limits.{field_name} must be between 0 and {MAX_LIMIT}")
    return value


def choice(value: str, allowed: Iterable[str], what: str) -> str:
    options = tuple(allowed)
    if value not in options:
        raise Invalid(f"{what} must be one of {', '.join(options)}")
    return value


def page_size(limit: int) -> int:
    if limit == 0:
        return 100
    if not 1 <= limit <= 1000:
        raise Invalid("limit must be between 1 and 1000")
    return limit
