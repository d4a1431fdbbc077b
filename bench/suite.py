"""The processes a benchmark run needs: the fake vendor, the bare proxy and the full suite.

The suite is `bytespike_common.devstack.Stack` (nats-server, auth, router, metering, edge)
with a catalog written to the run's temp dir: one bench model per protocol, each deployed
on the provider of the same protocol, whose base URL `BYTESPIKE_PROVIDER_<ID>_BASE_URL`
points at the fake vendor. Process memory and CPU are read from /proc (no psutil).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.protocols import PROTOCOLS
from bytespike_common.devstack import SERVICES, Stack, free_port

UPSTREAM_KEY = "bench-upstream-credential"
# Real vendors' URLs: the env overrides below point every one of them at the fake.
PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {
        "protocol": "openai",
        "base_url": "https://api.openai.com/v1",
        "credential_env": "OPENAI_API_KEY",
    },
    "anthropic": {
        "protocol": "anthropic",
        "base_url": "https://api.anthropic.com",
        "credential_env": "ANTHROPIC_API_KEY",
        "headers": {"anthropic-version": "2023-06-01"},
    },
    "gemini": {
        "protocol": "gemini",
        "base_url": "https://generativelanguage.googleapis.com",
        "credential_env": "GEMINI_API_KEY",
    },
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def catalog() -> dict[str, object]:
    models = [
        {
            "id": protocol.model,
            "owned_by": "bench",
            "context_window": 131072,
            "max_output_tokens": 8192,
            "capabilities": ["text", "stream"],
            "prices": {"input": 1, "output": 4, "cache_read": 0.1},
            "deployments": [
                {"provider": protocol.provider, "upstream_model": protocol.upstream_model}
            ],
        }
        for protocol in PROTOCOLS
    ]
    return {"providers": PROVIDERS, "models": models, "groups": {"default": {"models": ["*"]}}}


def suite_env(fake_url: str) -> dict[str, str]:
    env = {
        # Metering grants this much to a new account where it supports it (credit checks).
        "BYTESPIKE_METERING_INITIAL_CREDIT": str(10**15),
    }
    for protocol in PROTOCOLS:
        provider = PROVIDERS[protocol.provider]
        env[f"BYTESPIKE_PROVIDER_{protocol.provider.upper()}_BASE_URL"] = protocol.provider_base(
            fake_url
        )
        env[str(provider["credential_env"])] = UPSTREAM_KEY
    return env


def rss_mb(pid: int) -> float:
    """Resident set size from /proc/<pid>/status, in MiB (0.0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


async def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@dataclass
class Processes:
    """Everything a run started; `stop` ends exactly these processes."""

    data_dir: Path
    fake_port: int = 0
    proxy_port: int = 0
    stack: Stack | None = None
    helpers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Extra edges with candidate fixes, and proxies with other clients, by mode name.
    variant_urls: dict[str, str] = field(default_factory=dict)

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def edge_pid(self) -> int:
        assert self.stack is not None
        return self.stack.processes["edge"].pid

    def pid(self, name: str) -> int:
        if name in self.helpers:
            return self.helpers[name].pid
        assert self.stack is not None
        return self.stack.processes[name].pid

    def suite_pids(self) -> dict[str, int]:
        assert self.stack is not None
        return {name: process.pid for name, process in self.stack.processes.items()}

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log_file = self.data_dir / "logs" / f"{name}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as out:
            self.helpers[name] = subprocess.Popen(
                [sys.executable, *argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=Path(__file__).resolve().parent.parent,
            )

    async def start_fake(self) -> None:
        self.fake_port = free_port()
        self._spawn("fake", ["-m", "bench.fake_upstream", "--port", str(self.fake_port)])
        await wait_http(f"{self.fake_url}/_bench/health")

    async def start_proxy(self, client: str = "http1") -> str:
        """The bare proxy (mode `proxy`), or with another client (mode `proxy+<client>`)."""
        mode = "proxy" if client == "http1" else f"proxy+{client}"
        port = free_port()
        argv = ["-m", "bench.proxy", "--port", str(port)]
        self._spawn(mode, [*argv, "--upstream", self.fake_url, "--client", client])
        if mode == "proxy":
            self.proxy_port = port
        else:
            self.variant_urls[mode] = f"http://127.0.0.1:{port}"
        await wait_http(f"http://127.0.0.1:{port}/_bench/health")
        return mode

    async def start_stack(self, extra_env: dict[str, str] | None = None) -> None:
        """The suite against the fake vendor; `extra_env` for every one of its processes
        (`bench.ab` points PYTHONPATH at another checkout)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        catalog_path = self.data_dir / "catalog.yaml"
        catalog_path.write_text(yaml.safe_dump(catalog(), sort_keys=False))
        self.stack = Stack(
            data_dir=self.data_dir / "stack",
            catalog_path=catalog_path,
            edge_port=free_port(),
            service_ports={name: free_port() for name in SERVICES},
            env={**suite_env(self.fake_url), **(extra_env or {})},
        )
        await self.stack.start()

    async def start_variant(self, patches: str) -> str:
        """One more edge on the same suite with candidate fixes applied (`bench.edge`)."""
        assert self.stack is not None
        mode = f"gateway+{patches}"
        port = free_port()
        env = {
            **self.stack.service_env(),
            "BYTESPIKE_EDGE_PORT": str(port),
            # Its own side ports: the suite's edge holds the configured ones.
            "BYTESPIKE_EDGE_ADMIN_PORT": str(free_port()),
            "BYTESPIKE_EDGE_METRICS_PORT": str(free_port()),
        }
        self._spawn(mode, ["-m", "bench.edge", "--patch", patches], env)
        self.variant_urls[mode] = f"http://127.0.0.1:{port}"
        await wait_http(f"{self.variant_urls[mode]}/readyz")
        return mode

    async def configure_fake(self, ttfb: float, chunks: int, chunk_delay: float) -> None:
        body = {"ttfb": ttfb, "chunks": chunks, "chunk_delay": chunk_delay}
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{self.fake_url}/_bench/config", json=body) as resp,
        ):
            resp.raise_for_status()

    async def fake_requests(self) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.fake_url}/_bench/stats") as resp,
        ):
            return int((await resp.json())["requests"])

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        for process in self.helpers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.helpers.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.helpers.clear()
