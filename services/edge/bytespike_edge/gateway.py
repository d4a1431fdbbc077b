"""The edge's shared request steps: who is calling, which model, which deployment, admission.

Protocol modules (`protocols/`) parse their wire format and call these steps in order:
`authenticate` → `resolve_model` → `open_call` (plan + admission) → upstream → `finish`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS

from bytespike.auth.v1 import auth_pb2
from bytespike.router.v1 import router_pb2
from bytespike_common.errors import (
    DependencyUnavailable,
    NotFound,
    PermissionDenied,
    ProviderNotConfigured,
)
from bytespike_common.routing import RouteIndex
from bytespike_edge import observability
from bytespike_edge.call import CallContext
from bytespike_edge.control.auth import Authenticator
from bytespike_edge.control.metering import Admitter
from bytespike_edge.control.routes import RouteWatcher
from bytespike_edge.control.usage import UsagePublisher
from bytespike_edge.health import BreakerPolicy, HealthBoard
from bytespike_edge.media import MediaFetcher
from bytespike_edge.settings import Settings
from bytespike_edge.upstream.client import Timeouts, Upstream

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment ready to call: where, with which credential and limits."""

    deployment: router_pb2.Deployment
    provider: router_pb2.Provider
    credential: str
    timeouts: Timeouts


def _timeouts(provider: router_pb2.Provider) -> Timeouts:
    timeouts = provider.timeouts
    return Timeouts(
        connect=(timeouts.connect_ms or 5_000) / 1000,
        first_byte=(timeouts.first_byte_ms or 120_000) / 1000,
        total=timeouts.total_ms / 1000 if timeouts.total_ms else None,
    )


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        authenticator: Authenticator,
        routes: RouteWatcher,
        admitter: Admitter,
        upstream: Upstream,
        usage: UsagePublisher,
        nats: NATS | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.settings = settings
        self.authenticator = authenticator
        self.routes = routes
        self.admitter = admitter
        self.upstream = upstream
        self.usage = usage
        self._nats = nats
        self.media = MediaFetcher(
            settings.media_max_bytes, settings.media_fetch_timeout, settings.media_allow_private
        )
        self.health = HealthBoard(
            BreakerPolicy(
                window_seconds=settings.breaker_window,
                min_requests=settings.breaker_min_requests,
                failure_ratio=settings.breaker_failure_ratio,
                base_cooldown=settings.breaker_cooldown,
                max_cooldown=settings.breaker_max_cooldown,
            )
        )
        self._environ = environ
        self._targets_index: RouteIndex | None = None
        self._targets_cache: dict[str, Target] = {}

    def ready(self) -> bool:
        """A route table in hand and the usage stream reachable."""
        return self.routes.index is not None and (self._nats is None or self._nats.is_connected)

    @property
    def index(self) -> RouteIndex:
        index = self.routes.index
        if index is None:
            raise DependencyUnavailable("The gateway has no route table yet; retry shortly.")
        return index

    def authenticate(self, key: str | None) -> Coroutine[Any, Any, auth_pb2.Principal]:
        # The authenticator's coroutine itself, not one more awaiting it: every request.
        return self.authenticator.authenticate(key)

    def allowed(self, principal: auth_pb2.Principal, model_id: str) -> bool:
        return self.index.allowed(
            model_id,
            principal.group,
            principal.account_allowed_models,
            principal.key_allowed_models,
        )

    def resolve_model(self, name: str, principal: auth_pb2.Principal) -> router_pb2.Model:
        model = self.index.resolve(name)
        if model is None:
            raise NotFound(
                f"The model '{name}' does not exist.", param="model", code="model_not_found"
            )
        observability.note_model(model.id)
        if not self.allowed(principal, model.id):
            raise PermissionDenied(
                f"This API key is not allowed to use the model '{model.id}'.",
                param="model",
                code="model_not_allowed",
            )
        return model

    def targets(self, model: router_pb2.Model) -> list[Target]:
        """Deployments in failover order, each with its credential; 503 if none is usable."""
        index = self.index
        if index is not self._targets_index:
            # A Target per deployment of this route table, built on first use: the plan's
            # order changes per request, what each deployment needs does not.
            self._targets_index, self._targets_cache = index, {}
        # Only this table's own models: a caller's own message shares no deployment objects.
        cache = self._targets_cache if index.models.get(model.id) is model else {}
        targets: list[Target] = []
        missing: list[str] = []
        for deployment in index.plan(model):
            target = cache.get(deployment.id)
            if target is None or target.deployment is not deployment:
                provider = index.providers[deployment.provider_id]
                credential = ""
                if provider.credential_env:
                    credential = self._environ.get(provider.credential_env, "")
                    if not credential:
                        missing.append(provider.credential_env)
                        continue
                target = cache[deployment.id] = Target(
                    deployment, provider, credential, _timeouts(provider)
                )
            targets.append(target)
        if not targets:
            names = " or ".join(sorted(set(missing))) or "a provider"
            raise ProviderNotConfigured(
                f"The model '{model.id}' is unavailable: its provider has no credential. "
                f"Set {names} in the gateway's environment."
            )
        return targets

    def provider_available(self, provider: router_pb2.Provider) -> bool:
        return not provider.credential_env or bool(self._environ.get(provider.credential_env))

    async def open_call(
        self,
        *,
        request_id: str,
        client_protocol: str,
        principal: auth_pb2.Principal,
        model: router_pb2.Model,
        target: Target,
        stream: bool,
        request_bytes: int,
        max_output_tokens: int,
    ) -> CallContext:
        """Admission; from here on the call must end with `finish`."""
        self.usage.check_capacity()
        admission = await self.admitter.admit(
            request_id,
            principal,
            model.id,
            estimated_input_tokens=max(1, request_bytes // 4),
            max_output_tokens=max_output_tokens or model.max_output_tokens,
        )
        return CallContext(
            request_id=request_id,
            client_protocol=client_protocol,
            principal=principal,
            model=model,
            deployment=target.deployment,
            provider=target.provider,
            stream=stream,
            hold_id=admission.hold_id,
            lease_id=admission.lease_id,
            reserved=admission.reserved,
            request_bytes=request_bytes,
        )

    def finish(self, call: CallContext) -> None:
        event = call.usage_event()
        self.usage.submit(event)
        observability.record_call(call, event.usage)
