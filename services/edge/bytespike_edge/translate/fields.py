"""Typed field access for request decoders: a wrong or missing field is a precise 400.

Every accessor raises `InvalidRequest` naming the field's path (`messages[2].content`), so a
decoder built from them raises nothing else on arbitrary JSON. A key may be given as a
tuple of spellings (Gemini accepts camelCase and snake_case); the first present one wins.
JSON `null` counts as absent.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

from bytespike_common.errors import InvalidRequest
from bytespike_edge.translate.ir import JSON

Key = str | tuple[str, ...]


def fail(message: str, param: str | None) -> NoReturn:
    raise InvalidRequest(message, param=param)


def path(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


def _lookup(body: JSON, key: Key, prefix: str) -> tuple[Any, str]:
    names = (key,) if isinstance(key, str) else key
    for name in names:
        if body.get(name) is not None:
            return body[name], path(prefix, name)
    return None, path(prefix, names[0])


def expect_dict(value: Any, param: str) -> JSON:
    if not isinstance(value, dict):
        fail(f"{param or 'body'}: expected an object", param or None)
    return value


def expect_list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        fail(f"{param}: expected an array", param)
    return value


def expect_str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        fail(f"{param}: expected a string", param)
    return value


def req_str(body: JSON, key: Key, prefix: str = "") -> str:
    value, where = _lookup(body, key, prefix)
    if value is None:
        fail(f"{where}: field required", where)
    return expect_str(value, where)


def opt_str(body: JSON, key: Key, prefix: str = "") -> str | None:
    value, where = _lookup(body, key, prefix)
    return None if value is None else expect_str(value, where)


def opt_int(body: JSON, key: Key, prefix: str = "", minimum: int | None = None) -> int | None:
    value, where = _lookup(body, key, prefix)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        fail(f"{where}: expected an integer", where)
    if minimum is not None and value < minimum:
        fail(f"{where}: must be >= {minimum}", where)
    return value


def req_int(body: JSON, key: Key, prefix: str = "", minimum: int | None = None) -> int:
    value = opt_int(body, key, prefix, minimum)
    if value is None:
        where = path(prefix, key if isinstance(key, str) else key[0])
        fail(f"{where}: field required", where)
    return value


def opt_float(
    body: JSON, key: Key, prefix: str = "", low: float | None = None, high: float | None = None
) -> float | None:
    value, where = _lookup(body, key, prefix)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        fail(f"{where}: expected a number", where)
    if (low is not None and value < low) or (high is not None and value > high):
        fail(f"{where}: must be between {low} and {high}", where)
    return float(value)


def opt_bool(body: JSON, key: Key, prefix: str = "") -> bool | None:
    value, where = _lookup(body, key, prefix)
    if value is None:
        return None
    if not isinstance(value, bool):
        fail(f"{where}: expected a boolean", where)
    return value


def opt_dict(body: JSON, key: Key, prefix: str = "") -> JSON | None:
    value, where = _lookup(body, key, prefix)
    return None if value is None else expect_dict(value, where)


def opt_list(body: JSON, key: Key, prefix: str = "") -> list[Any] | None:
    value, where = _lookup(body, key, prefix)
    return None if value is None else expect_list(value, where)


def req_list(body: JSON, key: Key, prefix: str = "") -> list[Any]:
    value, where = _lookup(body, key, prefix)
    if value is None:
        fail(f"{where}: field required", where)
    return expect_list(value, where)


def str_list(body: JSON, key: Key, prefix: str = "", allow_single: bool = False) -> list[str]:
    """A list of strings; with `allow_single` a lone string counts as a one-item list."""
    value, where = _lookup(body, key, prefix)
    if value is None:
        return []
    if allow_single and isinstance(value, str):
        return [value]
    items = expect_list(value, where)
    return [expect_str(item, path(where, i)) for i, item in enumerate(items)]


def str_map(body: JSON, key: Key, prefix: str = "") -> dict[str, str] | None:
    value = opt_dict(body, key, prefix)
    if value is None:
        return None
    where = _lookup(body, key, prefix)[1]
    return {k: expect_str(v, path(where, k)) for k, v in value.items()}


def choice(value: str, allowed: tuple[str, ...], param: str) -> str:
    if value not in allowed:
        fail(f"{param}: must be one of {', '.join(allowed)}; got {value!r}", param)
    return value
