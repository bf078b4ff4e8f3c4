"""The one place where failures become HTTP responses.

Every error body is ``{"error": "<human sentence>", "code": "<machine code>"}``, plus
``"fields": {field: reason}`` when specific input fields are at fault. Nothing else leaks:
no stack traces, no exception reprs, no secrets.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_405_METHOD_NOT_ALLOWED,
    HTTP_409_CONFLICT,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

from viarah.domain.shared.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from viarah.entrypoints.web.ratelimit import LoginRateLimited

log = logging.getLogger("viarah.web")


class ErrorOut(msgspec.Struct, frozen=True):
    """The error envelope of every failed request."""

    error: str
    code: str
    fields: dict[str, str] | msgspec.UnsetType = msgspec.UNSET


def _spec(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorOut, description=description, generate_examples=False)


#: Documented error responses of the authenticated API (OpenAPI ``responses``).
API_ERRORS: dict[int, ResponseSpec] = {
    HTTP_400_BAD_REQUEST: _spec("Invalid input; ``fields`` names each offending field"),
    HTTP_401_UNAUTHORIZED: _spec("No, invalid, expired or revoked credentials"),
    HTTP_403_FORBIDDEN: _spec("Role, token scope, CSRF token or Origin does not allow this"),
    HTTP_404_NOT_FOUND: _spec("Unknown, or not visible to the caller"),
    HTTP_409_CONFLICT: _spec("Conflicts with the current state"),
    HTTP_413_REQUEST_ENTITY_TOO_LARGE: _spec("Request body over VIA_RAH_MAX_REQUEST_BYTES"),
    HTTP_503_SERVICE_UNAVAILABLE: _spec("The database is unavailable"),
}
#: Login also answers 429 (with ``Retry-After``) after too many failures.
LOGIN_ERRORS: dict[int, ResponseSpec] = {
    **API_ERRORS,
    HTTP_429_TOO_MANY_REQUESTS: _spec("Too many failed logins; retry after Retry-After seconds"),
}
#: The liveness probe's failure.
HEALTH_ERRORS: dict[int, ResponseSpec] = {
    HTTP_503_SERVICE_UNAVAILABLE: _spec("The database does not answer"),
}

INTERNAL_ERROR = "internal error"

#: Domain error class → HTTP status. Looked up along the exception's MRO.
DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFound: HTTP_404_NOT_FOUND,
    Unauthenticated: HTTP_401_UNAUTHORIZED,
    Forbidden: HTTP_403_FORBIDDEN,
    InvalidInput: HTTP_400_BAD_REQUEST,
    Conflict: HTTP_409_CONFLICT,
    Unavailable: HTTP_503_SERVICE_UNAVAILABLE,
}

#: Framework (litestar) statuses → our code and sentence.
_HTTP_ERRORS: dict[int, tuple[str, str]] = {
    HTTP_400_BAD_REQUEST: ("bad_request", "the request is malformed"),
    HTTP_401_UNAUTHORIZED: ("unauthenticated", "authentication required"),
    HTTP_403_FORBIDDEN: ("forbidden", "you are not allowed to do this"),
    HTTP_404_NOT_FOUND: ("not_found", "no such resource"),
    HTTP_405_METHOD_NOT_ALLOWED: ("method_not_allowed", "this method is not allowed here"),
    HTTP_413_REQUEST_ENTITY_TOO_LARGE: ("too_large", "the request body is too large"),
    HTTP_429_TOO_MANY_REQUESTS: ("rate_limited", "too many requests; try again later"),
    HTTP_503_SERVICE_UNAVAILABLE: ("unavailable", "the service is unavailable"),
}

_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")
_AT_PATH = re.compile(r"\s*-\s*at\s*`\$\.?([^`]*)`\s*$")


def error_response(
    status: int,
    message: str,
    code: str,
    *,
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    """A JSON error envelope."""
    body: dict[str, Any] = {"error": message, "code": code}
    if fields:
        body["fields"] = fields
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def error_body(message: str, code: str) -> bytes:
    """The envelope as bytes, for middleware that answers before routing."""
    return msgspec.json.encode({"error": message, "code": code})


def _domain_status(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in DOMAIN_STATUS:
            return DOMAIN_STATUS[cls]
    return HTTP_400_BAD_REQUEST


def handle_domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    """NotFound 404, Unauthenticated 401, Forbidden 403, InvalidInput 400, Conflict 409,
    Unavailable 503."""
    status = _domain_status(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="viarah"'} if status == 401 else None
    fields = {exc.field: exc.reason} if isinstance(exc, InvalidInput) else None
    if status >= 500:
        log.warning(
            "http.unavailable method=%s path=%s code=%s", request.method, request.url.path, exc.code
        )
    return error_response(status, exc.message, exc.code, fields=fields, headers=headers)


def _field_reason(item: dict[str, Any]) -> tuple[str, str]:
    """One litestar validation item → (field, reason) in the caller's words."""
    key = str(item.get("key") or "")
    message = str(item.get("message") or "is invalid")
    if match := _UNKNOWN_FIELD.search(message):
        return match.group(1), "is not a known field"
    if match := _MISSING_FIELD.search(message):
        return match.group(1), "is required"
    if match := _AT_PATH.search(message):
        path = match.group(1)
        message = message[: match.start()]
        if path:
            key = f"{key}.{path}" if key and key != "data" else path
    if key in ("", "data"):
        return "body", "must be a JSON object"
    return key, message[:1].lower() + message[1:]


def handle_validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[Any]:
    """Schema violations (wrong types, unknown or missing fields) → 400 naming each field."""
    items = exc.extra if isinstance(exc.extra, list) else []
    fields = dict(_field_reason(item) for item in items if isinstance(item, dict))
    if not fields:
        return error_response(HTTP_400_BAD_REQUEST, "the request is malformed", "invalid_input")
    message = "; ".join(
        f"request body {reason}" if field == "body" else f"{field}: {reason}"
        for field, reason in fields.items()
    )
    return error_response(HTTP_400_BAD_REQUEST, message, "invalid_input", fields=fields)


def handle_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Framework errors (404 route, 405 method, 413 size, malformed JSON ...)."""
    status = exc.status_code
    if status >= 500 and status != HTTP_503_SERVICE_UNAVAILABLE:
        return handle_internal_error(request, exc)
    code, default = _HTTP_ERRORS.get(status, ("error", "the request failed"))
    message = default
    if status == HTTP_400_BAD_REQUEST and isinstance(exc.__cause__, SerializationException):
        message = "the request body is not valid JSON"
        code = "malformed_json"
    elif status == HTTP_405_METHOD_NOT_ALLOWED:
        message = f"method {request.method} is not allowed on {request.url.path}"
    elif status == HTTP_404_NOT_FOUND:
        message = f"no route matches {request.url.path}"
    return error_response(status, message, code, headers=exc.headers)


def handle_rate_limited(request: Request[Any, Any, Any], exc: LoginRateLimited) -> Response[Any]:
    """Too many failed logins → 429 with ``Retry-After``."""
    return error_response(
        HTTP_429_TOO_MANY_REQUESTS,
        "too many failed login attempts; try again later",
        "rate_limited",
        headers={"Retry-After": str(exc.retry_after)},
    )


def handle_internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Anything unexpected: log it server-side, answer a bare 500.

    Only the exception type and the stack are logged, not its message: database driver
    messages can quote statement parameters, which may hold hashes or secrets.
    """
    stack = "".join(traceback.format_tb(exc.__traceback__))
    cause = exc.__cause__ or exc.__context__
    log.error(
        "http.unhandled method=%s path=%s error=%s cause=%s\n%s",
        request.method,
        request.url.path,
        type(exc).__name__,
        type(cause).__name__ if cause is not None else "-",
        stack,
    )
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, INTERNAL_ERROR, "internal_error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DomainError: handle_domain_error,
    ValidationException: handle_validation_error,
    LoginRateLimited: handle_rate_limited,
    HTTPException: handle_http_error,
    Exception: handle_internal_error,
}
