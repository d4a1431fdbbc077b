"""The catalog as the admin API sees it: groups and models to choose from, and the checks
that keep accounts and keys pointing at things that exist.

Auth stores group names and model patterns without knowing the catalog; the edge holds the
route table, so the admin API validates here: an unknown group, or an exact model id (no
wildcard) that is neither a model nor written as an alias, is a 422 naming the field.
Patterns with wildcards are accepted as they are (they may match models added later). A
group removed from the catalog later leaves its keys allowed nothing until fixed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError

from bytespike.router.v1 import router_pb2
from bytespike_common.routing import RouteIndex, matches_any
from bytespike_edge.admin import schemas
from bytespike_edge.admin.deps import CallerDep, CatalogDep, CatalogSource, IndexDep
from bytespike_edge.protocols.models import model_available

router = APIRouter(prefix="/admin/v1", tags=["catalog"])
WILDCARDS = set("*?[")


class CatalogCheck:
    """Collects every catalog problem of one request, then raises one 422."""

    def __init__(self, index: RouteIndex) -> None:
        self._index = index
        self._errors: list[dict[str, Any]] = []

    def _error(self, loc: Sequence[str | int], message: str, value: str) -> None:
        self._errors.append(
            {"type": "value_error", "loc": ["body", *loc], "msg": message, "input": value}
        )

    def group(self, value: str | None, *loc: str) -> CatalogCheck:
        if value is not None and value not in self._index.groups:
            known = ", ".join(sorted(self._index.groups))
            self._error(loc, f"unknown group {value!r}; the catalog has: {known}", value)
        return self

    def models(self, values: Iterable[str] | None, *loc: str) -> CatalogCheck:
        for number, value in enumerate(values or ()):
            if WILDCARDS & set(value):
                continue
            model = self._index.resolve(value)
            if model is None:
                self._error((*loc, number), f"unknown model {value!r}", value)
            elif model.id != value:
                message = f"{value!r} is an alias: use the model id {model.id!r}"
                self._error((*loc, number), message, value)
        return self

    def done(self) -> None:
        if self._errors:
            raise RequestValidationError(self._errors)


def model_ids(index: RouteIndex, patterns: Sequence[str]) -> list[str]:
    return [m.id for m in index.table.models if matches_any(patterns, m.id)]


@router.get("/groups", summary="Routing groups of the catalog")
async def list_groups(_: CallerDep, index: IndexDep) -> list[schemas.Group]:
    return [
        schemas.Group(
            name=group.name,
            model_patterns=list(group.model_patterns),
            price_multiplier=(group.price_multiplier_ppm or 1_000_000) / 1_000_000,
            models=model_ids(index, group.model_patterns),
        )
        for group in index.table.groups
    ]


@router.get("/models", summary="Models of the catalog, with their availability")
async def list_models(
    _: CallerDep, index: IndexDep, catalog: CatalogDep
) -> list[schemas.ModelAccess]:
    return [model_access(index, catalog, model) for model in index.table.models]


def model_access(
    index: RouteIndex, catalog: CatalogSource, model: router_pb2.Model
) -> schemas.ModelAccess:
    return schemas.ModelAccess(
        id=model.id,
        display_name=model.display_name or model.id,
        owned_by=model.owned_by,
        available=model_available(index, model, catalog.provider_available),
    )
