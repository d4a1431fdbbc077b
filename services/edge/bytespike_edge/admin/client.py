"""A small synchronous client of the admin REST API (what the `bytespike` CLI uses)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx


class AdminError(Exception):
    """The admin API refused a request; `str()` is a one-line explanation."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        if isinstance(self.detail, list):
            fields = [
                f"{'.'.join(str(p) for p in e.get('loc', [])[1:]) or 'request'}: {e.get('msg')}"
                for e in self.detail
                if isinstance(e, dict)
            ]
            return f"HTTP {self.status}: " + "; ".join(fields)
        return f"HTTP {self.status}: {self.detail}"


def _segment(value: str) -> str:
    return quote(value, safe="")


class AdminClient:
    def __init__(
        self,
        url: str,
        token: str = "",
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, f"/admin/v1{path}", **kwargs)
        if response.is_success:
            return response.json()
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text or response.reason_phrase
        raise AdminError(response.status_code, detail)

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        query = {k: v for k, v in params.items() if v is not None}
        while True:
            page = self._request("GET", path, params=query)
            yield from page["data"]
            if not page["has_more"]:
                return
            query["after"] = page["next_after"]

    # accounts

    def create_account(self, name: str, **fields: Any) -> dict[str, Any]:
        body = {"name": name, **{k: v for k, v in fields.items() if v is not None}}
        result: dict[str, Any] = self._request("POST", "/accounts", json=body)
        return result

    def list_accounts(self, status: str | None = None) -> list[dict[str, Any]]:
        return list(self._pages("/accounts", {"status": status}))

    def get_account(self, account: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/accounts/{_segment(account)}")
        return result

    def update_account(self, account: str, **fields: Any) -> dict[str, Any]:
        body = {k: v for k, v in fields.items() if v is not None}
        result: dict[str, Any] = self._request("PATCH", f"/accounts/{_segment(account)}", json=body)
        return result

    def set_account_status(self, account: str, enabled: bool) -> dict[str, Any]:
        action = "enable" if enabled else "disable"
        result: dict[str, Any] = self._request("POST", f"/accounts/{_segment(account)}/{action}")
        return result

    # keys

    def _keys(self, account: str) -> str:
        return f"/accounts/{_segment(account)}/keys"

    def create_key(self, account: str, **fields: Any) -> dict[str, Any]:
        body = {k: v for k, v in fields.items() if v is not None}
        result: dict[str, Any] = self._request("POST", self._keys(account), json=body)
        return result

    def list_keys(self, account: str, status: str | None = None) -> list[dict[str, Any]]:
        return list(self._pages(self._keys(account), {"status": status}))

    def get_key(self, account: str, key_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"{self._keys(account)}/{_segment(key_id)}")
        return result

    def revoke_key(self, account: str, key_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"{self._keys(account)}/{_segment(key_id)}/revoke"
        )
        return result

    def rotate_key(self, account: str, key_id: str, **fields: Any) -> dict[str, Any]:
        body = {k: v for k, v in fields.items() if v is not None}
        path = f"{self._keys(account)}/{_segment(key_id)}/rotate"
        result: dict[str, Any] = self._request("POST", path, json=body)
        return result

    def key_models(self, account: str, key_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request(
            "GET", f"{self._keys(account)}/{_segment(key_id)}/models"
        )
        return result

    # catalog

    def groups(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/groups")
        return result

    def models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/models")
        return result

    # credits and usage

    def _credit(
        self, action: str, account: str, amount: str, reason: str, idempotency_key: str | None
    ) -> dict[str, Any]:
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        result: dict[str, Any] = self._request(
            "POST",
            f"/accounts/{_segment(account)}/credits/{action}",
            json={"amount": amount, "reason": reason},
            headers=headers,
        )
        return result

    def top_up(
        self, account: str, amount: str, reason: str, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """`amount` in credits, as a decimal string (exact)."""
        return self._credit("topup", account, amount, reason, idempotency_key)

    def adjust(
        self, account: str, amount: str, reason: str, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._credit("adjust", account, amount, reason, idempotency_key)

    def balance(self, account: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/accounts/{_segment(account)}/balance")
        return result

    def ledger(
        self, account: str, limit: int | None = None, before: int | None = None
    ) -> dict[str, Any]:
        """One page, newest first: `data`, `has_more`, `next_before`."""
        params = {k: v for k, v in {"limit": limit, "before": before}.items() if v is not None}
        result: dict[str, Any] = self._request(
            "GET", f"/accounts/{_segment(account)}/ledger", params=params
        )
        return result

    def usage(
        self,
        account: str,
        group_by: Sequence[str] = (),
        since: str | None = None,
        until: str | None = None,
    ) -> dict[str, Any]:
        params = {"group_by": ",".join(group_by), "since": since, "until": until}
        result: dict[str, Any] = self._request(
            "GET",
            f"/accounts/{_segment(account)}/usage",
            params={k: v for k, v in params.items() if v},
        )
        return result
