"""Reading a route table: model names, group access and the failover order.

Shared by the router (which serves `Plan`) and the edge (which plans locally from the table
it holds, so choosing a deployment costs no RPC).
"""

from __future__ import annotations

import fnmatch
import os
import random
from collections.abc import Iterable, Sequence

from bytespike.router.v1 import router_pb2

Deployment = router_pb2.Deployment
# One generator per process, seeded from os.urandom: the order only has to be fair, and a
# fresh Random() per plan cost a urandom read per request. Forked children reseed.
_rng = random.Random()
os.register_at_fork(after_in_child=_rng.seed)


def matches_any(patterns: Iterable[str], model_id: str) -> bool:
    return any(fnmatch.fnmatchcase(model_id, pattern) for pattern in patterns)


def priority_pools(deployments: Sequence[Deployment]) -> list[list[Deployment]]:
    """The deployments grouped by priority, ascending; table order within a group."""
    return [
        [d for d in deployments if d.priority == priority]
        for priority in sorted({d.priority for d in deployments})
    ]


def _weighted_order(pools: Sequence[Sequence[Deployment]], rng: random.Random) -> list[Deployment]:
    ordered: list[Deployment] = []
    for group in pools:
        if len(group) == 1:
            ordered.append(group[0])
            continue
        pool = list(group)
        while len(pool) > 1:
            weights = [max(d.weight, 0) for d in pool]
            pick = rng.choices(pool, weights=weights)[0] if sum(weights) > 0 else pool[0]
            ordered.append(pick)
            pool.remove(pick)
        ordered += pool
    return ordered


def order_deployments(
    deployments: Sequence[Deployment], rng: random.Random | None = None
) -> list[Deployment]:
    """Priority ascending; within a priority, a weighted random order (weight 0 = last resort)."""
    return _weighted_order(priority_pools(deployments), rng or _rng)


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
        self._group_access: dict[tuple[str, str], bool] = {}
        # Per model, what planning does not draw at random: the callable deployments by
        # priority, and the whole order when no priority has a choice to make.
        self._pools: dict[str, list[list[Deployment]]] = {}
        self._fixed: dict[str, list[Deployment]] = {}
        for model in table.models:
            pools = self._pools[model.id] = priority_pools(self._callable(model))
            if all(len(group) == 1 for group in pools):
                self._fixed[model.id] = [group[0] for group in pools]

    def _callable(self, model: router_pb2.Model) -> list[Deployment]:
        return [d for d in model.deployments if d.provider_id in self.providers]

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
        if not self._group_allows(group, model_id):
            return False
        if account_allowed and not matches_any(account_allowed, model_id):
            return False
        return not key_allowed or matches_any(key_allowed, model_id)

    def _group_allows(self, group: str, model_id: str) -> bool:
        allows = self._group_access.get((group, model_id))
        if allows is None:
            entry = self.groups.get(group)
            allows = entry is not None and matches_any(entry.model_patterns, model_id)
            if entry is not None and model_id in self.models:
                # Bounded: the table's groups times its models.
                self._group_access[group, model_id] = allows
        return allows

    def plan(self, model: router_pb2.Model, rng: random.Random | None = None) -> list[Deployment]:
        if self.models.get(model.id) is not model:
            # Not this snapshot's model (a caller's own message): nothing cached applies.
            return order_deployments(self._callable(model), rng)
        fixed = self._fixed.get(model.id)
        if fixed is not None:
            return list(fixed)
        return _weighted_order(self._pools[model.id], rng or _rng)
