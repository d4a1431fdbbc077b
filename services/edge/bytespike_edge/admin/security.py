"""Who may call the admin API, and on which accounts.

Two kinds of bearer token:

- the operator token (`BYTESPIKE_EDGE_ADMIN_TOKEN`): every account, every operation;
- account-scoped tokens (`BYTESPIKE_EDGE_ADMIN_ACCOUNT_TOKENS`): one account's keys
  (list, show, create, revoke, rotate) and a read-only view of that account. Any other
  account is 403 whether or not it exists, so a scoped token learns nothing about others.

Tokens are compared with `hmac.compare_digest` against every configured token (no early
exit), and failed attempts spend the caller's address's budget (`BadKeyGuard`), so guessing
is slowed to a crawl while other clients are unaffected.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from bytespike_common.errors import AuthenticationFailed
from bytespike_edge.control.auth import BadKeyGuard

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated admin caller. `account` is None for the operator."""

    account: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.account is None

    def may_manage(self, account_id: str, account_name: str) -> bool:
        return self.account is None or self.account in (account_id, account_name)


def _equal(presented: bytes, expected: str) -> bool:
    return hmac.compare_digest(presented, expected.encode())


class AdminTokens:
    def __init__(self, operator: str, accounts: Mapping[str, str], guard: BadKeyGuard) -> None:
        self._operator = operator
        self._accounts = dict(accounts)
        self._guard = guard

    @property
    def open(self) -> bool:
        """Development without an operator token: the admin API asks for none."""
        return not self._operator

    def identify(self, presented: str | None, client: str | None) -> Caller:
        """Raises RateLimited (budget spent) or AuthenticationFailed."""
        self._guard.check(client)
        token = (presented or "").encode()
        match: Caller | None = None
        if token and self._operator and _equal(token, self._operator):
            match = Caller()
        for account, expected in self._accounts.items():
            # Every token is compared, matched or not: the time taken says nothing.
            if token and _equal(token, expected) and match is None:
                match = Caller(account)
        if match is not None:
            return match
        if self.open:
            return Caller()
        self._guard.failed(client)
        raise AuthenticationFailed("A valid admin bearer token is required.")
