"""Route tables: the catalog as the edge consumes it, and the failover plan for a model."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from bytespike.router.v1 import router_pb2
from bytespike_router.catalog import Catalog, micro_credits

PROTOCOLS = {
    "openai": router_pb2.PROTOCOL_OPENAI,
    "anthropic": router_pb2.PROTOCOL_ANTHROPIC,
    "gemini": router_pb2.PROTOCOL_GEMINI,
}


def _timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def build_route_table(catalog: Catalog) -> router_pb2.RouteTable:
    table = router_pb2.RouteTable(
        version=catalog.version, generated_at=_timestamp(dt.datetime.now(dt.UTC))
    )
    for provider_id, provider in catalog.providers.items():
        table.providers.append(
            router_pb2.Provider(
                id=provider_id,
                protocol=PROTOCOLS[provider.protocol],
                base_url=provider.base_url.rstrip("/"),
                credential_env=provider.credential_env,
                timeouts=router_pb2.Timeouts(**provider.timeouts.model_dump()),
                headers=provider.headers,
            )
        )
    for model in catalog.models:
        prices = model.prices
        table.models.append(
            router_pb2.Model(
                id=model.id,
                aliases=model.aliases,
                display_name=model.display_name or model.id,
                owned_by=model.owned_by,
                context_window=model.context_window,
                max_output_tokens=model.max_output_tokens,
                capabilities=model.capabilities,
                prices=router_pb2.Prices(
                    input_per_mtok=micro_credits(prices.input),
                    output_per_mtok=micro_credits(prices.output),
                    cache_read_per_mtok=micro_credits(prices.cache_read),
                    cache_write_per_mtok=micro_credits(prices.cache_write),
                    per_image=micro_credits(prices.image),
                    per_video_second=micro_credits(prices.video_second),
                ),
                deployments=[
                    router_pb2.Deployment(
                        id=d.id,
                        provider_id=d.provider,
                        upstream_model=d.upstream_model,
                        priority=d.priority,
                        weight=d.weight,
                    )
                    for d in model.deployments
                ],
                created_at=_timestamp(dt.datetime.fromisoformat(model.created)),
            )
        )
    for name, group in catalog.groups.items():
        table.groups.append(
            router_pb2.Group(
                name=name,
                model_patterns=group.models,
                price_multiplier_ppm=micro_credits(group.price_multiplier),
            )
        )
    return table
