"""The catalog: providers, models, deployments and groups, validated from YAML.

Prices are written by operators in credits per 1M tokens (or per image / per second) and
held as integer micro-credits; group multipliers as integer parts per million. Every
provider's base URL can be overridden with `BYTESPIKE_PROVIDER_<ID>_BASE_URL`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MICRO = Decimal(1_000_000)
_ID_RE = r"^[a-z0-9][a-z0-9._-]*$"


class CatalogError(Exception):
    """The catalog file is unreadable or invalid; messages name the path and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Model):
    connect_ms: int = Field(5_000, gt=0)
    first_byte_ms: int = Field(120_000, gt=0)
    total_ms: int = Field(0, ge=0)


class Provider(_Model):
    protocol: Literal["openai", "anthropic", "gemini"]
    base_url: str
    # Name of the env var with the API key; empty = no credential needed (mock).
    credential_env: str = ""
    timeouts: Timeouts = Timeouts()
    headers: dict[str, str] = {}


class Prices(_Model):
    """Credits per 1M tokens, per image, per second of video."""

    input: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    cache_read: Decimal = Decimal(0)
    cache_write: Decimal = Decimal(0)
    image: Decimal = Decimal(0)
    video_second: Decimal = Decimal(0)

    @field_validator("*")
    @classmethod
    def _non_negative(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError("prices cannot be negative")
        return value


class Deployment(_Model):
    provider: str
    upstream_model: str
    priority: int = 0
    weight: Annotated[int, Field(ge=0)] = 1
    id: str = ""


class Model(_Model):
    id: Annotated[str, Field(pattern=_ID_RE)]
    display_name: str = ""
    owned_by: str = ""
    aliases: list[str] = []
    context_window: int = Field(0, ge=0)
    max_output_tokens: int = Field(0, ge=0)
    capabilities: list[str] = []
    prices: Prices = Prices()
    created: str = "2025-01-01T00:00:00Z"
    deployments: Annotated[list[Deployment], Field(min_length=1)]


class Group(_Model):
    models: list[str]
    price_multiplier: Decimal = Decimal(1)


class Catalog(_Model):
    providers: dict[str, Provider]
    models: list[Model]
    groups: dict[str, Group] = {}

    @model_validator(mode="after")
    def _references_resolve(self) -> Catalog:
        seen: dict[str, str] = {}
        for index, model in enumerate(self.models):
            for name in (model.id, *model.aliases):
                if name in seen:
                    raise ValueError(
                        f"models.{index}: {name!r} is already used by model {seen[name]!r}"
                    )
                seen[name] = model.id
            for d_index, deployment in enumerate(model.deployments):
                if deployment.provider not in self.providers:
                    raise ValueError(
                        f"models.{index}.deployments.{d_index}.provider: unknown provider "
                        f"{deployment.provider!r}"
                    )
        if "default" not in self.groups:
            raise ValueError("groups.default: the default group is required")
        return self

    @property
    def version(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def override_env_name(provider_id: str) -> str:
    return "BYTESPIKE_PROVIDER_" + re.sub(r"[^A-Z0-9]", "_", provider_id.upper()) + "_BASE_URL"


def parse_catalog(text: str, source: str, environ: Mapping[str, str]) -> Catalog:
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: the catalog must be a mapping")
    for provider_id, provider in (raw.get("providers") or {}).items():
        override = environ.get(override_env_name(str(provider_id)))
        if override and isinstance(provider, dict):
            provider["base_url"] = override
    try:
        catalog = Catalog.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(f"{source}: invalid catalog:\n{_describe(exc)}") from exc
    return _with_deployment_ids(catalog)


def load_catalog(path: str | Path, environ: Mapping[str, str]) -> Catalog:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read catalog: {exc.strerror}") from exc
    return parse_catalog(text, str(path), environ)


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(root)"
        lines.append(f"  {where}: {error['msg']}")
    return "\n".join(lines)


def _with_deployment_ids(catalog: Catalog) -> Catalog:
    models = []
    for model in catalog.models:
        deployments = [
            d if d.id else d.model_copy(update={"id": f"{model.id}/{d.provider}/{i}"})
            for i, d in enumerate(model.deployments)
        ]
        models.append(model.model_copy(update={"deployments": deployments}))
    return catalog.model_copy(update={"models": models})


def micro_credits(value: Decimal) -> int:
    """Credits (as written in the catalog) to integer micro-credits."""
    return int((value * MICRO).to_integral_value())
