"""The gateway's overhead, measured side by side with a direct call (`make bench`).

Processes, all on 127.0.0.1:

- `fake_upstream` — a fast fake vendor speaking the generate endpoints of the three
  protocols (OpenAI Chat Completions, Anthropic Messages, Gemini), streaming and not, with
  configurable time to first byte, chunk count and chunk pacing;
- `proxy` — the floor: a bare raw-ASGI reverse proxy on uvicorn + uvloop + httptools
  forwarding with an aiohttp client;
- the full suite (`bytespike_common.devstack.Stack`: nats-server, auth, router, metering,
  edge) whose catalog points at the fake;
- `load` — a closed-loop load driver in its own process, so the measured processes never
  share an event loop with it.

`__main__` alternates direct / proxy / gateway runs within one invocation, reports ratios
to direct, checks the targets of DESIGN §9 and writes `bench/results/latest.json`.
"""
