"""The Redis `Limiter`: the same sliding windows and slots, shared by every metering replica.

Each call is one Lua script, so checking every limit of a request and then taking them all
is atomic across replicas. Time comes from Redis (`TIME`), not from the replicas' clocks.
All keys of one call share the account's hash tag (`{scope}`), so they live in one slot
of a Redis Cluster.

Keys: `<prefix>:{<scope>}:<name>:<window index>` — a counter per window, expiring after two
windows; `<prefix>:{<scope>}:<name>` — a sorted set of slot holders scored by expiry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis

from bytespike_metering.limits import CONCURRENCY_RETRY_MS, Decision, Slot, Window

# ARGV: window_ms, holder, ttl_ms, n_windows, then per window: name, limit, amount;
# then per slot: name, limit. KEYS[1] is the key prefix including the hash tag.
# Returns {admitted (0|1), retry_after_ms, index of the refusing limit (1-based)}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = tonumber(ARGV[1])
local holder, ttl, nw = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local index = math.floor(now / w)
local elapsed = now - index * w
local base = KEYS[1]
local windows, slots = {}, {}
for i = 1, nw do
  local o = 4 + (i - 1) * 3
  windows[i] = {ARGV[o + 1], tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])}
end
local s = 5 + nw * 3
local k = 1
while ARGV[s] do
  slots[k] = {ARGV[s], tonumber(ARGV[s + 1])}
  s, k = s + 2, k + 1
end
for i, win in ipairs(windows) do
  local name, limit, amount = win[1], win[2], win[3]
  local cur = tonumber(redis.call('GET', base .. name .. ':' .. index) or '0')
  local prev = tonumber(redis.call('GET', base .. name .. ':' .. (index - 1)) or '0')
  if prev * (w - elapsed) / w + cur + amount > limit then
    local wait
    if amount > limit then
      wait = w
    elseif cur + amount <= limit and prev > 0 then
      wait = math.ceil(w * (prev - (limit - cur - amount)) / prev) - elapsed
    else
      local at = 0
      if cur > 0 then at = math.ceil(w * (cur - (limit - amount)) / cur) end
      wait = w - elapsed + at
    end
    return {0, math.max(1, wait), i}
  end
end
for j, slot in ipairs(slots) do
  local key = base .. slot[1]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if not redis.call('ZSCORE', key, holder) and redis.call('ZCARD', key) >= slot[2] then
    return {0, CONCURRENCY_RETRY_MS, nw + j}
  end
end
for _, win in ipairs(windows) do
  local key = base .. win[1] .. ':' .. index
  redis.call('INCRBY', key, win[3])
  redis.call('PEXPIRE', key, 2 * w + 1000)
end
for _, slot in ipairs(slots) do
  local key = base .. slot[1]
  redis.call('ZADD', key, now + ttl, holder)
  redis.call('PEXPIRE', key, ttl)
end
return {1, 0, 0}
""".replace("CONCURRENCY_RETRY_MS", str(CONCURRENCY_RETRY_MS))

# ARGV: window_ms, then name, delta pairs. Counts never go below zero.
_ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = tonumber(ARGV[1])
local index = math.floor(now / w)
local i = 2
while ARGV[i] do
  local key = KEYS[1] .. ARGV[i] .. ':' .. index
  local value = redis.call('INCRBY', key, tonumber(ARGV[i + 1]))
  if value < 0 then redis.call('SET', key, 0) end
  redis.call('PEXPIRE', key, 2 * w + 1000)
  i = i + 2
end
return 0
"""


class RedisLimiter:
    def __init__(self, client: redis.Redis, *, prefix: str, window_ms: int) -> None:
        self._client = client
        self._prefix = prefix
        self._window_ms = window_ms
        self._acquire = client.register_script(_ACQUIRE)
        self._adjust = client.register_script(_ADJUST)

    @classmethod
    def from_url(cls, url: str, *, prefix: str, window_ms: int) -> RedisLimiter:
        return cls(redis.Redis.from_url(url), prefix=prefix, window_ms=window_ms)

    def _base(self, scope: str) -> str:
        return f"{self._prefix}:{{{scope}}}:"

    async def acquire(
        self,
        scope: str,
        windows: Sequence[Window],
        slots: Sequence[Slot],
        holder: str,
        ttl_ms: int,
    ) -> Decision:
        args: list[Any] = [self._window_ms, holder, ttl_ms, len(windows)]
        for window in windows:
            args += [window.name, window.limit, window.amount]
        for slot in slots:
            args += [slot.name, slot.limit]
        admitted, wait, refused = await self._acquire(keys=[self._base(scope)], args=args)
        if admitted:
            return Decision(True)
        limits: list[Window | Slot] = [*windows, *slots]
        refusing = limits[int(refused) - 1]
        return Decision(False, int(wait), refusing.label or refusing.name)

    async def adjust(self, scope: str, deltas: Sequence[tuple[str, int]]) -> None:
        if not deltas:
            return
        args: list[Any] = [self._window_ms]
        for name, delta in deltas:
            args += [name, delta]
        await self._adjust(keys=[self._base(scope)], args=args)

    async def release(self, scope: str, slot_names: Sequence[str], holder: str) -> None:
        if not slot_names:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for name in slot_names:
                pipe.zrem(self._base(scope) + name, holder)
            await pipe.execute()

    async def ping(self) -> bool:
        return bool(await self._client.ping())

    async def aclose(self) -> None:
        await self._client.aclose()
