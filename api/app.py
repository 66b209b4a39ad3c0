"""The FastAPI application: wiring, the error handlers and request limits."""

from __future__ import annotations

import difflib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prefect.client.orchestration import get_client
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import (
    ApiError,
    AuthenticationError,
    InternalError,
    InvalidRequestError,
    MalformedRequestError,
    NotFoundError,
    PayloadTooLargeError,
)
from api.keys import KeyVerifier
from api.prefect_calls import instrument, start_counting
from api.routes import router
from api.schemas import AutomationCreate
from api.service import AutomationService
from api.settings import Settings
from api.template import load_template

logger = logging.getLogger(__name__)

CALLS_HEADER = "X-Prefect-Calls"
_CREATE_FIELDS = [f.alias or name for name, f in AutomationCreate.model_fields.items()]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    async with get_client() as client:
        instrument(client)
        template = load_template(settings.prefect_yaml, settings.project_dir)
        app.state.service = AutomationService(client, template)
        app.state.keys = KeyVerifier(client, settings.key_cache_seconds)
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
    first = error.errors()[0]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return MalformedRequestError("The request body is not valid JSON.")

    param = _param(tuple(first.get("loc", ())))
    message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    if kind == "missing" and param is None:
        return InvalidRequestError("A JSON request body is required.")
    if kind == "missing":
        return InvalidRequestError(f"{param}: this field is required.", param=param)
    if kind == "extra_forbidden":
        hint = difflib.get_close_matches(param or "", _CREATE_FIELDS, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else "."
        return InvalidRequestError(
            f"{param}: unknown field{suggestion}", param=param, code="unknown_field"
        )
    if param and not message.startswith(f"{param}:"):
        message = f"{param}: {message}"
    return InvalidRequestError(message, param=param)


def _answer(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="Workjet-compatible Automations API",
        version="1.0.0",
        description="Scheduled AI agents as Prefect deployments, with the Workjet v1"
        " Automations API.",
        lifespan=lifespan,
    )
    app.state.settings = settings or Settings()
    app.include_router(router, prefix="/v1")

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return _answer(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return _answer(_validation_error(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            return _answer(NotFoundError("No such endpoint."))
        if error.status_code == 401:
            return _answer(AuthenticationError(str(error.detail)))
        answer = ApiError(str(error.detail))
        body = answer.body()
        body["error"]["type"] = "invalid_request_error"
        return JSONResponse(body, status_code=error.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=error)
        return _answer(InternalError("An unexpected error occurred."))

    @app.middleware("http")
    async def _limits_and_counts(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length", "0")
        limit = app.state.settings.max_body_bytes
        if not length.isdigit():
            return _answer(MalformedRequestError("Content-Length is not a number."))
        if int(length) > limit:
            return _answer(
                PayloadTooLargeError(f"The request body exceeds {limit} bytes.")
            )

        counter = start_counting()
        response = await call_next(request)
        response.headers[CALLS_HEADER] = str(counter[0])
        return response

    return app


app = create_app()
