"""The FastAPI application: wiring, the error handlers and request limits."""

from __future__ import annotations

import difflib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prefect.client.orchestration import get_client
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.errors import (
    ApiError,
    InternalError,
    InvalidRequestError,
    MalformedRequestError,
    MethodNotAllowedError,
    NotFoundError,
)
from api.idempotency import IdempotencyStore
from api.keys import KeyVerifier
from api.limits import BodyLimitMiddleware, check_declared_length
from api.prefect_calls import instrument, start_counting
from api.rate_limit import RateLimiter
from api.routes import router
from api.runs import RunService
from api.schemas import (
    AutomationCreate,
    EmailChannelIn,
    SlackChannelIn,
    WebhookChannelIn,
)
from api.service import AutomationService
from api.settings import Settings
from api.template import load_template
from api.tools import router as tools_router

logger = logging.getLogger(__name__)

CALLS_HEADER = "X-Prefect-Calls"
_KNOWN_FIELDS = sorted(
    {
        field.alias or name
        for model in (
            AutomationCreate,
            SlackChannelIn,
            EmailChannelIn,
            WebhookChannelIn,
        )
        for name, field in model.model_fields.items()
    }
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # A hung Prefect must become a 503, not a request that never ends. Waiting for
    # a connection is not a hung Prefect: a burst of requests queues there, and
    # few connections keep SQLite's writers from locking each other out.
    timeout = httpx.Timeout(settings.prefect_timeout_seconds, pool=120)
    limits = httpx.Limits(max_connections=6, max_keepalive_connections=6)
    httpx_settings = {"timeout": timeout, "limits": limits}
    async with get_client(httpx_settings=httpx_settings) as client:
        instrument(client)
        template = load_template(settings.prefect_yaml, settings.project_dir)
        app.state.service = AutomationService(client, template)
        app.state.runs = RunService(client, app.state.service)
        app.state.idempotency = IdempotencyStore(client)
        app.state.keys = KeyVerifier(client, settings.key_cache_seconds)
        app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
        yield


def _param(loc: tuple[Any, ...]) -> str | None:
    """`("body", "channels", 0, "url")` becomes `channels[0].url`."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("slack", "email", "webhook") or "[" in str(part):
            # discriminated unions add the tag to the path; it is not a field
            continue
        else:
            text += f".{part}" if text else str(part)
    return text or None


def _validation_error(error: RequestValidationError) -> ApiError:
    # An unknown field explains the rest (`system_prompt` also makes `systemPrompt`
    # missing), so it is reported first.
    errors = sorted(error.errors(), key=lambda e: e.get("type") != "extra_forbidden")
    first = errors[0]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return MalformedRequestError("The request body is not valid JSON.")

    param = _param(tuple(first.get("loc", ())))
    if kind in ("union_tag_invalid", "union_tag_not_found") and param:
        param = f"{param}.type"
    message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    if kind == "missing" and param is None:
        return InvalidRequestError("A JSON request body is required.")
    if kind in ("model_attributes_type", "dict_type") and param is None:
        return InvalidRequestError(
            "The request body must be a JSON object, sent with"
            " Content-Type: application/json."
        )
    if kind == "missing":
        return InvalidRequestError(f"{param}: this field is required.", param=param)
    if kind == "extra_forbidden":
        field = (param or "").rsplit(".", 1)[-1].split("[", 1)[0]
        hint = difflib.get_close_matches(field, _KNOWN_FIELDS, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else "."
        return InvalidRequestError(
            f"{param}: unknown field{suggestion}", param=param, code="unknown_field"
        )
    if param and not message.startswith(f"{param}:"):
        message = f"{param}: {message}"
    return InvalidRequestError(message, param=param)


def _api_error_in(error: BaseException | None) -> ApiError | None:
    """Our own error inside a chain or an exception group, if there is one."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _api_error_in(inner)
            if found is not None:
                return found
    return None


def _answer(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


def _allowed_methods(app: FastAPI, request: Request) -> str:
    allowed = []
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


def _configure_logging() -> None:
    """One info line per business event, to stderr, for the service's own modules.

    Prefect's logging setup, loaded with Prefect, already gives the root logger a
    handler; a handler of our own is added only where there is none.
    """
    service_logger = logging.getLogger("api")
    service_logger.setLevel(logging.INFO)
    if logging.getLogger().handlers or service_logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    service_logger.addHandler(handler)


def create_app(settings: Settings | None = None) -> FastAPI:
    _configure_logging()
    app = FastAPI(
        redirect_slashes=False,
        title="Workjet-compatible Automations API",
        version="1.0.0",
        description="Scheduled AI agents as Prefect deployments, with the Workjet v1"
        " Automations API.",
        lifespan=lifespan,
    )
    app.state.settings = settings or Settings()
    app.include_router(router, prefix="/v1")
    app.include_router(tools_router, prefix="/v1")

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return _answer(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return _answer(_validation_error(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # FastAPI wraps any failure while reading the body, the size limit included.
        cause = _api_error_in(error.__cause__)
        if cause is not None:
            return _answer(cause)
        if error.status_code == 400:
            return _answer(MalformedRequestError("The request body could not be read."))
        if error.status_code == 404:
            return _answer(NotFoundError("No such endpoint."))
        if error.status_code == 405:
            # Starlette names the methods of the first route that matched the path
            # only; every route of the path counts.
            allow = _allowed_methods(app, request)
            return _answer(
                MethodNotAllowedError("This endpoint does not take that method.", allow)
            )
        return _answer(InternalError("An unexpected error occurred."))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=error)
        return _answer(InternalError("An unexpected error occurred."))

    @app.middleware("http")
    async def _limits_and_counts(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        try:
            check_declared_length(
                request.headers.get("content-length"),
                app.state.settings.max_body_bytes,
            )
        except ApiError as error:
            return _answer(error)

        counter = start_counting()
        response = await call_next(request)
        response.headers[CALLS_HEADER] = str(counter[0])
        return response

    app.add_middleware(BodyLimitMiddleware, max_bytes=app.state.settings.max_body_bytes)
    return app


app = create_app()
