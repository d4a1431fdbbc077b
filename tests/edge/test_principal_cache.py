"""The edge's principal cache: freshness, the key's own deadlines, and its bound."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from bytespike.auth.v1 import auth_pb2
from bytespike_edge.control.auth import PrincipalCache

NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def principal(account: str = "acct", **stamps: float) -> auth_pb2.Principal:
    found = auth_pb2.Principal(account_id=account)
    for field, at in stamps.items():
        getattr(found, field).CopyFrom(Timestamp(seconds=int(at), nanos=int(at % 1 * 1e9)))
    return found


def cache(size: int = 10, ttl: float = 60.0) -> tuple[PrincipalCache, Clock, Clock]:
    monotonic, wall = Clock(100.0), Clock(NOW)
    return PrincipalCache(size, ttl, clock=monotonic, wall=wall), monotonic, wall


def test_a_principal_is_served_until_its_ttl() -> None:
    found, monotonic, _ = cache(ttl=60)
    found.put("h", principal())
    monotonic.now += 59.9
    assert found.get("h") == principal()
    monotonic.now += 0.1
    assert found.get("h") is None
    assert len(found) == 0


def test_the_end_of_a_rotation_grace_is_enforced_on_a_hit() -> None:
    found, _, wall = cache()
    found.put("h", principal(revoke_at=NOW + 1.5))
    wall.now = NOW + 1.4
    assert found.get("h") is not None
    wall.now = NOW + 1.5
    assert found.get("h") is None


def test_an_expired_key_is_not_served_from_the_cache() -> None:
    found, _, _ = cache()
    found.put("h", principal(expires_at=NOW - 1, revoke_at=NOW + 100))
    assert found.get("h") is None


def test_the_earlier_of_expiry_and_revocation_counts() -> None:
    found, _, wall = cache()
    found.put("h", principal(expires_at=NOW + 10, revoke_at=NOW + 5))
    wall.now = NOW + 6
    assert found.get("h") is None


def test_full_it_drops_the_oldest_entry() -> None:
    found, _, _ = cache(size=2)
    found.put("a", principal("a"))
    found.put("b", principal("b"))
    found.put("a", principal("a2"))  # replaced: now the newest
    found.put("c", principal("c"))
    assert found.get("b") is None
    assert [found.get(h).account_id for h in ("a", "c")] == ["a2", "c"]  # type: ignore[union-attr]


def test_pop_forgets_a_key() -> None:
    found, _, _ = cache()
    found.put("h", principal())
    found.pop("h")
    found.pop("never-cached")
    assert found.get("h") is None
