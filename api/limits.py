"""A request body limit that holds for chunked bodies too.

Checking Content-Length alone lets a chunked body of any size through, so the
limit is also counted as the body is received; past it, reading the body raises
`PayloadTooLargeError`, which the app answers with its usual 413.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import MalformedRequestError, PayloadTooLargeError


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        received = 0
        limit = self.max_bytes

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(
                        f"The request body exceeds {limit} bytes."
                    )
            return message

        await self.app(scope, counted, send)


def check_declared_length(value: str | None, limit: int) -> None:
    """Refuse early when the declared length is already too large or not a number."""
    if value is None:
        return
    if not value.isdigit():
        raise MalformedRequestError("Content-Length is not a number.")
    if int(value) > limit:
        raise PayloadTooLargeError(f"The request body exceeds {limit} bytes.")
