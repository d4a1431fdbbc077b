"""Reading a route table: model names, group access and the failover order.

Shared by the router (which serves `Plan`) and the edge (which plans locally from the table
it holds, so choosing a deployment costs no RPC).
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Iterable, Sequence

from bytespike.router.v1 import router_pb2


def matches_any(patterns: Iterable[str], model_id: str) -> bool:
    return any(fnmatch.fnmatchcase(model_id, pattern) for pattern in patterns)


def order_deployments(
    deployments: Sequence[router_pb2.Deployment], rng: random.Random | None = None
) -> list[router_pb2.Deployment]:
    """Priority ascending; within a priority, a weighted random order (weight 0 = last resort)."""
    rng = rng or random.Random()
    ordered: list[router_pb2.Deployment] = []
    for priority in sorted({d.priority for d in deployments}):
        pool = [d for d in deployments if d.priority == priority]
        while pool:
            weights = [max(d.weight, 0) for d in pool]
            pick = rng.choices(pool, weights=weights)[0] if sum(weights) > 0 else pool[0]
            ordered.append(pick)
            pool.remove(pick)
    return ordered


class RouteIndex:
    """Lookups over one route-table snapshot, built once per snapshot."""

    def __init__(self, table: router_pb2.RouteTable) -> None:
        self.table = table
        self.version = table.version
        self.providers = {p.id: p for p in table.providers}
        self.groups = {g.name: g for g in table.groups}
        self.models = {m.id: m for m in table.models}
        self._names: dict[str, router_pb2.Model] = {}
        for model in table.models:
            self._names[model.id] = model
            for alias in model.aliases:
                self._names[alias] = model

    def resolve(self, name: str) -> router_pb2.Model | None:
        """A public id or alias; a `models/` prefix (Gemini style) is accepted."""
        return self._names.get(name) or self._names.get(name.removeprefix("models/"))

    def allowed(
        self,
        model_id: str,
        group: str,
        account_allowed: Sequence[str] = (),
        key_allowed: Sequence[str] = (),
    ) -> bool:
        """Effective access = group ∩ account cap ∩ key allow-list (empty cap = no cap)."""
        group_entry = self.groups.get(group)
        if group_entry is None or not matches_any(group_entry.model_patterns, model_id):
            return False
        if account_allowed and not matches_any(account_allowed, model_id):
            return False
        return not key_allowed or matches_any(key_allowed, model_id)

    def plan(
        self, model: router_pb2.Model, rng: random.Random | None = None
    ) -> list[router_pb2.Deployment]:
        return order_deployments(
            [d for d in model.deployments if d.provider_id in self.providers], rng
        )
