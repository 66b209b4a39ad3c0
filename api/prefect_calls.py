"""The boundary to Prefect: one shared client, call counting, error translation.

Every Prefect error is turned into an `ApiError` here, with the cause chained, so
nothing of Prefect's reaches a client: an unreachable or overloaded server becomes
503 with Retry-After, anything else a plain 500 whose detail stays in the log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.exceptions import PrefectHTTPStatusError

from api.errors import ApiError, InternalError, UnavailableError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
_calls: ContextVar[list[int] | None] = ContextVar("prefect_calls", default=None)


def start_counting() -> list[int]:
    """Count the Prefect calls made in this context from now on."""
    counter = [0]
    _calls.set(counter)
    return counter


async def _count_request(_: httpx.Request) -> None:
    counter = _calls.get()
    if counter is not None:
        counter[0] += 1


class BusyRetryTransport(httpx.AsyncBaseTransport):
    """Sends a request again while Prefect answers 503.

    The SQLite-backed server answers 503 when a write finds the database locked,
    and rolls the write back, so sending it again cannot do it twice. A burst of
    writes clears within seconds. Timeouts are not retried here: a hung server is
    left to the client's own retry, so it still becomes a 503 soon.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, attempts: int = 10) -> None:
        self.inner = inner
        self.attempts = attempts

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(self.attempts - 1):
            response = await self.inner.handle_async_request(request)
            if response.status_code != 503:
                return response
            await response.aclose()
            logger.debug("prefect busy, sending again attempt=%d", attempt + 1)
            await asyncio.sleep(min(0.2 * 2**attempt, 4.0) * random.uniform(0.5, 1.5))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def instrument(client: PrefectClient) -> PrefectClient:
    http = client._client
    http.event_hooks["request"].append(_count_request)
    http._transport = BusyRetryTransport(http._transport)
    return client


def translate(error: Exception) -> ApiError:
    if isinstance(error, ApiError):
        return error

    if isinstance(error, httpx.TransportError):
        logger.warning("prefect unreachable error=%s", type(error).__name__)
        return UnavailableError(
            "The orchestrator is unreachable right now; try again shortly."
        )

    if isinstance(error, PrefectHTTPStatusError | httpx.HTTPStatusError):
        status = error.response.status_code
        if status in UNAVAILABLE_STATUSES:
            logger.warning("prefect unavailable status=%d", status)
            return UnavailableError(
                "The orchestrator is busy or restarting; try again shortly."
            )
        logger.error("prefect refused status=%d detail=%s", status, error)
        return InternalError("The orchestrator refused the request.")

    logger.exception("unexpected error talking to prefect", exc_info=error)
    return InternalError("An unexpected error occurred.")


def prefect_boundary(
    method: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """Translate whatever the wrapped call raises into an `ApiError`."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except ApiError:
            raise
        except Exception as error:
            raise translate(error) from error

    return wrapper
