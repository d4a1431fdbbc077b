"""Starts the fake vendor as a separate process and talks to its control API."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bytespike_common.devstack import _wait_for_port, free_port

SCRIPT = Path(__file__).with_name("upstream.py")


class FakeVendorProcess:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._http = httpx.Client(base_url=self.url, timeout=5)

    def script(self, *steps: dict[str, Any]) -> None:
        self._http.post("/_control/script", json=list(steps)).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return list(self._http.get("/_control/requests").json()["requests"])

    def cancelled(self) -> int:
        return int(self._http.get("/_control/requests").json()["cancelled"])

    def reset(self) -> None:
        self._http.delete("/_control/requests").raise_for_status()

    def close(self) -> None:
        self._http.close()


@contextmanager
def fake_vendor() -> Iterator[FakeVendorProcess]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(SCRIPT), "--port", str(port)])
    try:
        _wait_for_port(port)
        vendor = FakeVendorProcess(port)
        yield vendor
        vendor.close()
    finally:
        process.terminate()
        process.wait(10)
