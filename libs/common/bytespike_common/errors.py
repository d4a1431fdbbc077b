"""The gateway's errors: one closed hierarchy, mapped once to every surface.

    GatewayError                       HTTP  gRPC code           cause (metrics label)
    ├── CallerError  (the client's fault)
    │   ├── InvalidRequest             400   INVALID_ARGUMENT    invalid_request
    │   ├── AuthenticationFailed       401   UNAUTHENTICATED     authentication
    │   ├── PermissionDenied           403   PERMISSION_DENIED   permission
    │   ├── NotFound                   404   NOT_FOUND           not_found
    │   └── RequestTooLarge            413   INVALID_ARGUMENT    request_too_large
    ├── PolicyError  (the operator's limits)
    │   ├── RateLimited                429   RESOURCE_EXHAUSTED  rate_limited
    │   └── InsufficientCredit         402   FAILED_PRECONDITION insufficient_credit
    ├── ProviderError  (the upstream vendor's fault)
    │   ├── UpstreamHTTPError          as upstream           upstream_status
    │   ├── UpstreamUnavailable        503   UNAVAILABLE         upstream_unavailable
    │   ├── UpstreamTimeout            504   DEADLINE_EXCEEDED   upstream_timeout
    │   └── ProviderNotConfigured      503   FAILED_PRECONDITION provider_not_configured
    └── GatewayFault  (ours)
        ├── DependencyUnavailable      503   UNAVAILABLE         dependency_unavailable
        └── InternalError              500   INTERNAL            internal

Each protocol renders an error with its own body (reference/protocols.md §2.7, §3.6, §5):
the `kind` below selects the Anthropic `error.type`, the OpenAI `type`/`code` and the
Gemini `status`; the renderers live in the edge's protocol modules.
"""

from __future__ import annotations

from enum import StrEnum

import grpc


class ErrorKind(StrEnum):
    """What went wrong, independent of protocol. Drives every rendering."""

    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    REQUEST_TOO_LARGE = "request_too_large"
    RATE_LIMITED = "rate_limited"
    INSUFFICIENT_CREDIT = "insufficient_credit"
    OVERLOADED = "overloaded"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    INTERNAL = "internal"


class GatewayError(Exception):
    """Base of every error the gateway shows a caller."""

    status: int = 500
    kind: ErrorKind = ErrorKind.INTERNAL
    cause: str = "internal"
    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        # Protocol-level machine code where one exists (OpenAI `code`, e.g. model_not_found).
        self.code = code
        self.retry_after = retry_after
        if status is not None:
            self.status = status


class CallerError(GatewayError):
    """The request itself is wrong; retrying it unchanged will fail again."""


class InvalidRequest(CallerError):
    status, kind, cause = 400, ErrorKind.INVALID_REQUEST, "invalid_request"
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class AuthenticationFailed(CallerError):
    status, kind, cause = 401, ErrorKind.AUTHENTICATION, "authentication"
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(CallerError):
    status, kind, cause = 403, ErrorKind.PERMISSION, "permission"
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(CallerError):
    status, kind, cause = 404, ErrorKind.NOT_FOUND, "not_found"
    grpc_code = grpc.StatusCode.NOT_FOUND


class RequestTooLarge(CallerError):
    status, kind, cause = 413, ErrorKind.REQUEST_TOO_LARGE, "request_too_large"
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class PolicyError(GatewayError):
    """The operator's limits refuse the request (throttling, credit)."""


class RateLimited(PolicyError):
    status, kind, cause = 429, ErrorKind.RATE_LIMITED, "rate_limited"
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class InsufficientCredit(PolicyError):
    status, kind, cause = 402, ErrorKind.INSUFFICIENT_CREDIT, "insufficient_credit"
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class ProviderError(GatewayError):
    """The upstream vendor failed or refused."""


class UpstreamHTTPError(ProviderError):
    """The upstream answered with an error status; `status` is the upstream's."""

    kind, cause = ErrorKind.INTERNAL, "upstream_status"
    grpc_code = grpc.StatusCode.UNKNOWN


class UpstreamUnavailable(ProviderError):
    status, kind, cause = 503, ErrorKind.UNAVAILABLE, "upstream_unavailable"
    grpc_code = grpc.StatusCode.UNAVAILABLE


class UpstreamTimeout(ProviderError):
    status, kind, cause = 504, ErrorKind.TIMEOUT, "upstream_timeout"
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class ProviderNotConfigured(ProviderError):
    """The model's provider has no credential in this deployment's environment."""

    status, kind, cause = 503, ErrorKind.UNAVAILABLE, "provider_not_configured"
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class GatewayFault(GatewayError):
    """Our own fault: a dependency is down or a bug."""


class DependencyUnavailable(GatewayFault):
    status, kind, cause = 503, ErrorKind.UNAVAILABLE, "dependency_unavailable"
    grpc_code = grpc.StatusCode.UNAVAILABLE


class InternalError(GatewayFault):
    status, kind, cause = 500, ErrorKind.INTERNAL, "internal"
    grpc_code = grpc.StatusCode.INTERNAL


def kind_for_status(status: int) -> ErrorKind:
    """The error kind an HTTP status stands for (used for upstream errors)."""
    return _STATUS_KINDS.get(
        status, ErrorKind.INTERNAL if status >= 500 else ErrorKind.INVALID_REQUEST
    )


_STATUS_KINDS: dict[int, ErrorKind] = {
    400: ErrorKind.INVALID_REQUEST,
    401: ErrorKind.AUTHENTICATION,
    402: ErrorKind.INSUFFICIENT_CREDIT,
    403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TIMEOUT,
    413: ErrorKind.REQUEST_TOO_LARGE,
    422: ErrorKind.INVALID_REQUEST,
    429: ErrorKind.RATE_LIMITED,
    500: ErrorKind.INTERNAL,
    502: ErrorKind.UNAVAILABLE,
    503: ErrorKind.UNAVAILABLE,
    504: ErrorKind.TIMEOUT,
    529: ErrorKind.OVERLOADED,
}
