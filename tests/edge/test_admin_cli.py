"""The `bytespike` CLI (typer's CliRunner) against a real admin server and auth service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner, Result

from bytespike_common import keys
from bytespike_edge.admin.cli import app, parse_duration
from tests.auth.harness import OPERATOR_TOKEN, admin_app, auth_service, serve

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
async def admin_url(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    database = tmp_path_factory.mktemp("cli") / "auth.db"
    channel: grpc.aio.Channel
    async with (
        auth_service(f"sqlite:///{database}", nats_url) as channel,
        serve(admin_app(channel)) as url,
    ):
        yield url


class Cli:
    """Runs the CLI in a worker thread: the admin server shares this test's event loop."""

    def __init__(self, url: str, token: str = OPERATOR_TOKEN) -> None:
        self.env = {"BYTESPIKE_ADMIN_URL": url, "BYTESPIKE_ADMIN_TOKEN": token}
        self.runner = CliRunner()

    async def __call__(self, *args: str, code: int = 0) -> Result:
        result = await asyncio.to_thread(self.runner.invoke, app, list(args), env=self.env)
        assert result.exit_code == code, (args, result.output, result.exception)
        return result

    async def json(self, *args: str) -> Any:
        return json.loads((await self(*args, "--json")).stdout)


@pytest.fixture
def cli(admin_url: str) -> Cli:
    return Cli(admin_url)


async def test_create_an_account_and_a_key_printed_once(cli: Cli) -> None:
    shown = await cli("accounts", "create", "acme", "--default-group", "claude-default")
    assert "claude-default" in shown.stdout
    created = await cli("keys", "create", "--account", "acme", "--group", "claude-default")
    plaintext = next(w for w in created.stdout.split() if w.startswith("sk-byts-"))
    assert keys.is_well_formed(plaintext)
    assert created.stdout.count(plaintext) == 1 and "only time" in created.stdout
    listed = await cli("keys", "list", "--account", "acme")
    assert plaintext[:12] in listed.stdout and plaintext not in listed.stdout
    as_json = await cli.json("keys", "list", "-a", "acme")
    assert [k["group"] for k in as_json] == ["claude-default"]
    key_id = as_json[0]["id"]
    details = await cli("keys", "show", key_id, "--account", "acme")
    assert "claude-default" in details.stdout and plaintext not in details.stdout
    models = await cli.json("keys", "models", key_id, "--account", "acme")
    assert {m["id"] for m in models} == {"claude-opus-4-8", "claude-sonnet-4-6", "claude-haiku-4-5"}


async def test_key_options_rotation_and_revocation(cli: Cli) -> None:
    await cli("accounts", "create", "rotors")
    created = await cli.json(
        "keys", "create", "-a", "rotors", "--name", "ci", "--rpm", "60", "--concurrency", "2",
        "-m", "gpt-5-5", "-m", "mock-echo", "--expires-in", "30d",
    )  # fmt: skip
    assert created["limits"] == {"rpm": 60, "tpm": 0, "concurrency": 2}
    assert created["allowed_models"] == ["gpt-5-5", "mock-echo"] and created["expires_at"]
    rotated = await cli("keys", "rotate", created["id"], "-a", "rotors", "--grace", "1h")
    assert "sk-byts-" in rotated.stdout and f"old key {created['id']} is revoked" in rotated.stdout
    revoked = await cli.json("keys", "revoke", created["id"], "--account", "rotors")
    assert revoked["status"] == "revoked"
    statuses = await cli.json("keys", "list", "-a", "rotors", "--status", "active")
    assert [k["name"] for k in statuses] == ["ci"] and statuses[0]["id"] != created["id"]


async def test_account_policy_disable_and_enable(cli: Cli) -> None:
    await cli("accounts", "create", "policied")
    capped = await cli.json("accounts", "update", "policied", "-m", "claude-*", "-m", "gpt-5-5")
    assert capped["allowed_models"] == ["claude-*", "gpt-5-5"]
    uncapped = await cli.json("accounts", "update", "policied", "--no-cap")
    assert uncapped["allowed_models"] == []
    assert (await cli.json("accounts", "disable", "policied"))["status"] == "disabled"
    disabled = await cli.json("accounts", "list", "--status", "disabled")
    assert "policied" in [a["name"] for a in disabled]
    assert (await cli.json("accounts", "enable", "policied"))["status"] == "active"
    table = await cli("accounts", "list")
    assert table.stdout.splitlines()[0].split()[:3] == ["NAME", "ID", "STATUS"]
    assert "policied" in (await cli("accounts", "show", "policied")).stdout


async def test_catalog_commands(cli: Cli) -> None:
    groups = await cli.json("catalog", "groups")
    assert {g["name"] for g in groups} >= {"default", "claude-default", "gemini-default"}
    table = await cli("catalog", "models")
    assert "gpt-5-5" in table.stdout and "mock-echo" in table.stdout


async def test_errors_exit_non_zero_with_the_reason(cli: Cli, admin_url: str) -> None:
    missing = await cli("keys", "list", "--account", "nobody", code=1)
    assert "HTTP 404" in missing.stderr and "nobody" in missing.stderr
    await cli("accounts", "create", "dupe")
    duplicate = await cli("accounts", "create", "dupe", code=1)
    assert "HTTP 409" in duplicate.stderr
    invalid = await cli("keys", "create", "-a", "dupe", "--group", "vip", code=1)
    assert "HTTP 422" in invalid.stderr and "group: unknown group 'vip'" in invalid.stderr
    stranger = await Cli(admin_url, token="not-the-token-000000")("accounts", "list", code=1)
    assert "HTTP 401" in stranger.stderr
    unreachable = await Cli("http://127.0.0.1:9")("accounts", "list", code=1)
    assert "cannot reach the admin API" in unreachable.stderr
    usage = await cli("keys", "rotate", "key_x", "-a", "dupe", "--grace", "soon", code=2)
    assert "duration" in usage.output
    assert (await cli("keys", "create", code=2)).exit_code == 2  # --account is required


def test_durations() -> None:
    assert [parse_duration(d) for d in ("90", "90s", "15m", "12h", "30d")] == [
        90,
        90,
        900,
        43200,
        2592000,
    ]
