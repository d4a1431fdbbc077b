"""API keys: `sk-byts-` + 32 random bytes (url-safe), kept at rest only as an HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

KEY_PREFIX = "sk-byts-"
# 32 bytes -> 43 url-safe base64 characters.
_KEY_RE = re.compile(r"^sk-byts-[A-Za-z0-9_-]{43,}$")
DISPLAY_PREFIX_LEN = len(KEY_PREFIX) + 4
# Anything that looks like one of our keys, anywhere in a string (for log redaction).
KEY_PATTERN = re.compile(r"sk-byts-[A-Za-z0-9_-]{4,}")


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def is_well_formed(key: str) -> bool:
    return bool(_KEY_RE.match(key))


def hash_key(secret: bytes, key: str) -> str:
    """The keyed hash that identifies a key at rest and on the wire between services."""
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LEN]


def redact(text: str) -> str:
    return KEY_PATTERN.sub(lambda m: m.group(0)[:DISPLAY_PREFIX_LEN] + "…", text)
