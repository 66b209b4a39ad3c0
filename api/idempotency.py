"""Safe retries of POST requests with an `Idempotency-Key` header.

The first request with a key claims it by creating a Prefect variable named after
the organization, the endpoint and the key; Prefect refuses a second variable of
the same name, so two identical requests sent at the same moment act once. The
claim records a hash of the body and, once the action is done, enough of its answer
to give it again (Prefect caps a variable at 5,000 characters, so a created
automation is remembered by its id and read again). A repeat with the same body
gets that answer; with another body it is a conflict. Keys expire after 24 hours.
Nothing is kept in the facade itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from pydantic import BaseModel

from api.errors import ConflictError, InvalidRequestError
from api.prefect_calls import prefect_boundary

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
TTL_SECONDS = 24 * 3600
WAIT_FOR_FIRST_SECONDS = 20.0
INSIST_TRIES = 4
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

Answer = TypeVar("Answer", bound=BaseModel)


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise InvalidRequestError(
            f"{HEADER}: use 1 to 255 visible ASCII characters, such as a UUID.",
            param=HEADER,
        )
    return key


def body_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def variable_name(organization: str, endpoint: str, key: str) -> str:
    digest = hashlib.sha256(f"{organization}\0{endpoint}\0{key}".encode()).hexdigest()
    return f"workjet_idem_{digest[:48]}"


class IdempotencyStore:
    def __init__(self, client: PrefectClient) -> None:
        self.client = client

    @prefect_boundary
    async def run_once(
        self,
        *,
        organization: str,
        endpoint: str,
        key: str,
        body: Any,
        act: Callable[[], Awaitable[Answer]],
        remember: Callable[[Answer], dict[str, Any]],
        recall: Callable[[dict[str, Any]], Awaitable[Answer]],
    ) -> tuple[Answer, bool]:
        """The answer, and whether it is a replay of an earlier request's answer."""
        name = variable_name(organization, endpoint, check_key(key))
        fingerprint = body_hash(body)

        if await self._claim(name, fingerprint):
            return await self._act(name, fingerprint, act, remember), False

        stored = await self._wait_for_answer(name, fingerprint)
        if stored is None:
            # The first request failed and released the key: act now.
            if await self._claim(name, fingerprint):
                return await self._act(name, fingerprint, act, remember), False
            stored = await self._wait_for_answer(name, fingerprint)
        if stored is None:
            raise ConflictError(
                f"{HEADER}: a request with this key is still in progress.",
                param=HEADER,
                code="idempotency_key_in_use",
            )
        return await recall(stored), True

    async def _claim(self, name: str, fingerprint: str) -> bool:
        value = {"body": fingerprint, "at": time.time(), "answer": None}
        try:
            await self.client.create_variable(VariableCreate(name=name, value=value))
        except ObjectAlreadyExists:
            if await self._expired(name):
                return await self._claim(name, fingerprint)
            return False
        return True

    async def _expired(self, name: str) -> bool:
        variable = await self.client.read_variable_by_name(name)
        value = variable.value if variable else None
        if isinstance(value, dict) and time.time() - value.get("at", 0) < TTL_SECONDS:
            return False
        await self._release(name)
        return True

    async def _act(
        self,
        name: str,
        fingerprint: str,
        act: Callable[[], Awaitable[Answer]],
        remember: Callable[[Answer], dict[str, Any]],
    ) -> Answer:
        try:
            answer = await act()
        except BaseException:
            # A failed action did nothing worth repeating: let a retry try again.
            await self._release(name)
            raise

        value = {
            "body": fingerprint,
            "at": time.time(),
            "answer": remember(answer),
        }
        update = VariableUpdate(name=name, value=value)
        if not await _insist(lambda: self.client.update_variable(update)):
            logger.warning("idempotency answer not recorded name=%s", name)
        return answer

    async def _wait_for_answer(
        self, name: str, fingerprint: str
    ) -> dict[str, Any] | None:
        deadline = time.monotonic() + WAIT_FOR_FIRST_SECONDS
        while True:
            variable = await self.client.read_variable_by_name(name)
            if variable is None or not isinstance(variable.value, dict):
                return None

            if variable.value.get("body") != fingerprint:
                raise ConflictError(
                    f"{HEADER}: this key was already used with a different body.",
                    param=HEADER,
                    code="idempotency_key_reused",
                )
            if variable.value.get("answer") is not None:
                return dict(variable.value["answer"])
            if time.monotonic() > deadline:
                raise ConflictError(
                    f"{HEADER}: a request with this key is still in progress.",
                    param=HEADER,
                    code="idempotency_key_in_use",
                )
            await asyncio.sleep(0.2)

    async def _release(self, name: str) -> None:
        async def delete() -> None:
            with contextlib.suppress(ObjectNotFound):
                await self.client.delete_variable_by_name(name)

        if not await _insist(delete):
            logger.warning("idempotency key not released name=%s", name)


async def _insist(call: Callable[[], Awaitable[Any]]) -> bool:
    """Make a bookkeeping call, trying again while Prefect is busy (503s come in
    bursts on SQLite): a key left claimed without an answer would make every retry
    of the request a conflict until the key expires. Whether it worked."""
    for attempt in range(INSIST_TRIES):
        try:
            await call()
        except Exception:
            logger.debug("idempotency bookkeeping failed attempt=%d", attempt + 1)
            await asyncio.sleep(0.5 * (attempt + 1))
        else:
            return True
    return False
