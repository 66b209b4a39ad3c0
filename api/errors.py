"""The one error shape of the API, and the exceptions that produce it.

Every error answer is `{"error": {"type", "code", "message", "param"}}`. Routes and
the service raise `ApiError` subclasses; Prefect, httpx and validation errors are
translated into them at the boundary, so no foreign error reaches a client.

    ApiError
    ├── MalformedRequestError    400 invalid_request_error
    ├── InvalidRequestError      422 invalid_request_error
    ├── AuthenticationError      401 authentication_error
    ├── BudgetExhaustedError     402 budget_error
    ├── NotFoundError            404 not_found_error
    ├── ConflictError            409 conflict_error
    ├── MethodNotAllowedError    405 invalid_request_error
    ├── PayloadTooLargeError     413 invalid_request_error
    ├── UnavailableError         503 unavailable_error (with Retry-After)
    └── InternalError            500 api_error
"""

from __future__ import annotations

from typing import Any, ClassVar


def quoted_id(text: str) -> str:
    """An id from a path, fit to repeat in a message: never control characters."""
    if text.isprintable() and len(text) <= 80:
        return f"'{text}'"
    return "with that id"


class ApiError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "type": self.type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
            }
        }

    def headers(self) -> dict[str, str]:
        return {}


class MalformedRequestError(ApiError):
    status = 400
    type = "invalid_request_error"
    default_code = "malformed_request"


class InvalidRequestError(ApiError):
    status = 422
    type = "invalid_request_error"
    default_code = "invalid_value"


class AuthenticationError(ApiError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class BudgetExhaustedError(ApiError):
    status = 402
    type = "budget_error"
    default_code = "monthly_budget_exceeded"


class NotFoundError(ApiError):
    status = 404
    type = "not_found_error"
    default_code = "not_found"


class ConflictError(ApiError):
    status = 409
    type = "conflict_error"
    default_code = "conflict"


class PayloadTooLargeError(ApiError):
    status = 413
    type = "invalid_request_error"
    default_code = "payload_too_large"


class UnavailableError(ApiError):
    status = 503
    type = "unavailable_error"
    default_code = "service_unavailable"
    retry_after_seconds: ClassVar[int] = 5

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class RateLimitError(ApiError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class MethodNotAllowedError(ApiError):
    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow}


class InternalError(ApiError):
    pass


def _documented(description: str) -> dict[str, object]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["type", "code", "message", "param"],
                            "properties": {
                                "type": {"type": "string"},
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "param": {"type": ["string", "null"]},
                            },
                        }
                    },
                }
            }
        },
    }


# The answer of the endpoints that start a run while a monthly budget is spent.
BudgetErrorDoc: dict[int | str, dict[str, object]] = {
    402: _documented("A monthly budget is spent; raise it or wait for the month."),
}

# The error answers every endpoint may give, for the OpenAPI document.
ErrorBodyDoc: dict[int | str, dict[str, object]] = {
    400: _documented("Malformed JSON."),
    401: _documented("Missing or unknown API key."),
    404: _documented("No such automation in this organization."),
    409: _documented("A conflict: a finished run, or an Idempotency-Key reused."),
    413: _documented("Request body too large."),
    422: _documented("A field or query parameter breaks a rule; `param` names it."),
    429: _documented("Too many requests for this key; retry after Retry-After."),
    503: _documented("Prefect is unreachable; retry after Retry-After seconds."),
}
