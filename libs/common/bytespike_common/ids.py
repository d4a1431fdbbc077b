"""Identifiers minted by the gateway."""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    """Sortable-ish, collision-safe id: prefix, millisecond time, 80 random bits."""
    return f"{prefix}_{int(time.time() * 1000):x}{secrets.token_hex(10)}"


def request_id() -> str:
    return new_id("req")
