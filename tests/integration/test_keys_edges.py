"""Keys across a fleet: two edge processes share auth, router, metering and NATS. A key
revoked, rotated out or whose account is disabled — through either edge's admin API — is
refused by both within a second (the principal cache TTL is a minute: only the NATS push
can do it). The `bytespike` CLI drives a real admin port, and no process logs a key."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bytespike_common import keys
from bytespike_common.devstack import Stack, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
PUSH_DEADLINE = 1.0


class Edge:
    def __init__(self, url: str, admin_url: str) -> None:
        self.url = url
        self.admin_url = admin_url


@pytest.fixture(scope="module")
async def second_edge(stack: Stack) -> AsyncIterator[Edge]:
    """Another edge process on its own ports, sharing the stack's services and NATS."""
    port, admin_port = free_port(), free_port()
    env = {
        **stack.service_env(),
        "BYTESPIKE_EDGE_PORT": str(port),
        "BYTESPIKE_EDGE_ADMIN_PORT": str(admin_port),
        "BYTESPIKE_EDGE_METRICS_PORT": "0",
    }
    log_path = stack.log_path("edge-2")
    with log_path.open("ab") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the fixture awaits it
            [sys.executable, "-m", "bytespike_edge"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    edge = Edge(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}")
    try:
        await _wait_ready(edge, process, log_path)
        yield edge
    finally:
        process.terminate()
        process.wait(15)


async def _wait_ready(edge: Edge, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                ready = await http.get(f"{edge.url}/readyz")
                admin = await http.get(f"{edge.admin_url}/healthz")
                if ready.status_code == admin.status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"second edge not ready; see {log}")


@pytest.fixture(scope="module")
def edges(stack: Stack, second_edge: Edge) -> list[Edge]:
    return [Edge(stack.edge_url, stack.admin_url), second_edge]


def _admin(stack: Stack, edge: Edge) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{edge.admin_url}/admin/v1",
        headers={"authorization": f"Bearer {stack.admin_token}"},
    )


async def _status(edge: Edge, key: str) -> int:
    async with httpx.AsyncClient(base_url=edge.url) as http:
        reply = await http.get("/v1/models", headers={"authorization": f"Bearer {key}"})
        return reply.status_code


async def _all_refuse_within(edges: list[Edge], plaintexts: list[str], started: float) -> float:
    """Seconds from `started` until every edge has answered 401 for every key (polled
    concurrently, over kept-alive connections)."""

    async def refused(http: httpx.AsyncClient, edge: Edge, key: str) -> float:
        headers = {"authorization": f"Bearer {key}"}
        while (await http.get(f"{edge.url}/v1/models", headers=headers)).status_code != 401:
            if time.monotonic() - started > 5:
                raise AssertionError(f"{edge.url} still accepts the key")
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    async with httpx.AsyncClient() as http:
        for edge in edges:  # open the connections before the clock matters
            await http.get(f"{edge.url}/healthz")
        times = await asyncio.gather(*(refused(http, e, k) for e in edges for k in plaintexts))
    return max(times)


async def _create(stack: Stack, edge: Edge, account: str, **fields: Any) -> dict[str, Any]:
    async with _admin(stack, edge) as admin:
        if (await admin.get(f"/accounts/{account}")).status_code == 404:
            (await admin.post("/accounts", json={"name": account})).raise_for_status()
        reply = await admin.post(f"/accounts/{account}/keys", json=fields)
        reply.raise_for_status()
        created: dict[str, Any] = reply.json()
        return created


async def test_a_revoked_key_is_refused_by_every_edge_within_a_second(
    stack: Stack, edges: list[Edge]
) -> None:
    key = await _create(stack, edges[0], "fleet")
    assert [await _status(e, key["plaintext"]) for e in edges] == [200, 200]  # both cached
    async with _admin(stack, edges[0]) as admin:
        started = time.monotonic()
        (await admin.post(f"/accounts/fleet/keys/{key['id']}/revoke")).raise_for_status()
    assert await _all_refuse_within(edges, [key["plaintext"]], started) < PUSH_DEADLINE


async def test_disabling_an_account_refuses_all_its_keys_everywhere(
    stack: Stack, edges: list[Edge]
) -> None:
    made = [await _create(stack, edges[1], "fleet-corp") for _ in range(3)]
    for key in made:
        assert [await _status(e, key["plaintext"]) for e in edges] == [200, 200]
    async with _admin(stack, edges[1]) as admin:
        (await admin.post("/accounts/fleet-corp/disable")).raise_for_status()
        # The push goes out before auth answers: time from the committed change.
        started = time.monotonic()
    plaintexts = [key["plaintext"] for key in made]
    assert await _all_refuse_within(edges, plaintexts, started) < PUSH_DEADLINE
    async with _admin(stack, edges[0]) as admin:
        (await admin.post("/accounts/fleet-corp/enable")).raise_for_status()
    # Re-enabling pushes too: edges forget the refusal at once.
    assert [await _status(e, made[0]["plaintext"]) for e in edges] == [200, 200]


async def test_rotation_grace_ends_on_every_edge(stack: Stack, edges: list[Edge]) -> None:
    old = await _create(stack, edges[0], "fleet-rotor", name="ci")
    assert [await _status(e, old["plaintext"]) for e in edges] == [200, 200]
    async with _admin(stack, edges[1]) as admin:
        reply = await admin.post(
            f"/accounts/fleet-rotor/keys/{old['id']}/rotate", json={"grace_seconds": 2}
        )
    rotated = reply.json()
    new = rotated["plaintext"]
    assert [await _status(e, old["plaintext"]) for e in edges] == [200, 200]
    assert [await _status(e, new) for e in edges] == [200, 200]
    revoke_at = dt.datetime.fromisoformat(rotated["previous"]["revoke_at"])
    remaining = (revoke_at - dt.datetime.now(dt.UTC)).total_seconds()
    elapsed = await _all_refuse_within(edges, [old["plaintext"]], time.monotonic())
    # Refused once the grace period is over (not before), and within the push deadline.
    assert remaining - 0.1 <= elapsed < remaining + PUSH_DEADLINE
    assert [await _status(e, new) for e in edges] == [200, 200]


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BYTESPIKE_ADMIN_URL": stack.admin_url,
        "BYTESPIKE_ADMIN_TOKEN": stack.admin_token,
    }
    binary = Path(sys.executable).parent / "bytespike"
    return subprocess.run(
        [str(binary), *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )


async def test_the_installed_cli_issues_a_key_every_edge_accepts(
    stack: Stack, edges: list[Edge]
) -> None:
    created = await asyncio.to_thread(_cli, stack, "accounts", "create", "fleet-cli")
    assert created.returncode == 0, created.stderr
    issued = await asyncio.to_thread(
        _cli, stack, "keys", "create", "--account", "fleet-cli", "--group", "claude-default"
    )
    assert issued.returncode == 0, issued.stderr
    plaintext = next(w for w in issued.stdout.split() if w.startswith("sk-byts-"))
    async with httpx.AsyncClient() as http:
        for edge in edges:
            reply = await http.get(f"{edge.url}/v1/models", headers={"x-api-key": plaintext})
            ids = [m["id"] for m in reply.json()["data"]]
            assert ids and all(i.startswith("claude-") for i in ids)


async def test_no_process_ever_logs_a_key(stack: Stack, edges: list[Edge]) -> None:
    """A full cycle per protocol with good, bad and revoked keys (headers and `?key=`), key
    creation and rotation: the logs of every process name keys by display prefix only."""
    good = await _create(stack, edges[0], "fleet-logs")
    bad = keys.generate_key()
    async with httpx.AsyncClient() as http:
        for edge in edges:
            for key in (good["plaintext"], bad):
                await http.get(f"{edge.url}/v1/models", headers={"x-api-key": key})
                await http.get(f"{edge.url}/v1beta/models", params={"key": key})
                await http.post(
                    f"{edge.url}/v1/chat/completions",
                    headers={"authorization": f"Bearer {key}"},
                    json={"model": "mock-echo", "messages": [{"role": "user", "content": key}]},
                )
    async with _admin(stack, edges[1]) as admin:
        rotated = await admin.post(f"/accounts/fleet-logs/keys/{good['id']}/rotate")
    secrets = [good["plaintext"], bad, rotated.json()["plaintext"]]
    await asyncio.sleep(0.5)  # let every process flush its log lines
    logs = {p.name: p.read_text(errors="replace") for p in stack.log_path("x").parent.glob("*")}
    assert any(good["prefix"] in text for text in logs.values()), "nothing about keys logged?"
    for name, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"{name} logged a key"
            assert secret[12:] not in text, f"{name} logged the secret part of a key"


async def test_admin_and_public_apis_stay_on_their_own_ports(
    stack: Stack, edges: list[Edge]
) -> None:
    async with httpx.AsyncClient() as http:
        headers = {"authorization": f"Bearer {stack.admin_token}"}
        public = await http.get(f"{edges[1].url}/admin/v1/accounts", headers=headers)
        assert public.status_code == 404
        assert (await http.get(f"{edges[1].admin_url}/v1/models")).status_code == 404


def test_the_edge_exits_non_zero_when_its_admin_port_is_taken(stack: Stack) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {
            **stack.service_env(),
            "BYTESPIKE_EDGE_PORT": str(free_port()),
            "BYTESPIKE_EDGE_ADMIN_PORT": str(taken.getsockname()[1]),
            "BYTESPIKE_EDGE_METRICS_PORT": "0",
        }
        done = subprocess.run(
            [sys.executable, "-m", "bytespike_edge"],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert done.returncode != 0
    assert b"address already in use" in done.stderr.lower()
