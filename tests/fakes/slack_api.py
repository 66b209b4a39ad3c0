"""A loopback server that answers as Slack's Web API does, for chat.postMessage.

Like Slack, it takes form-encoded or JSON bodies, checks the bearer token (or a
`token` form field), answers errors as HTTP 200 with `ok: false` and an error code,
and answers a rate limit with 429, `Retry-After` and `error: ratelimited`. It also
enforces the limits that make Slack refuse a message: 3,000 characters in a
section's text, 50 blocks, about 12,000 characters of block text in all, and
40,000 characters of `text`, all counted in UTF-16 code units as Slack counts them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

TOKEN = "xoxb-test-0000000000-abcdefghijklmnop"
SECTION_TEXT_LIMIT = 3_000
BLOCKS_LIMIT = 50
BLOCKS_TEXT_LIMIT = 12_000
TEXT_LIMIT = 40_000


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class FakeSlack:
    """What the fake knows and what it was sent."""

    base_url: str = ""
    token: str = TOKEN
    # Channel name (without '#') to id, for channels the app is a member of.
    member_of: dict[str, str] = field(
        default_factory=lambda: {"docs-team": "C0DOCS0001"}
    )
    # Channels that exist but the app was never invited to.
    not_member_of: set[str] = field(default_factory=lambda: {"private-team"})
    # Retry-After values to answer with 429, one request each, before any success.
    rate_limits: list[str] = field(default_factory=list)
    # Statuses (5xx) to answer with, one request each, before any success.
    server_errors: list[int] = field(default_factory=list)
    posted: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    authorizations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sections(self, channel_id: str | None = None) -> list[str]:
        """The text of every section posted, in order."""
        return [
            block["text"]["text"]
            for message in self.posted
            if channel_id is None or message["channel"] == channel_id
            for block in message.get("blocks", [])
            if block["type"] == "section"
        ]

    def answer(
        self, path: str, arguments: dict[str, Any]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        """Status, headers and JSON body for one request."""
        with self.lock:
            self.requests += 1
            if self.rate_limits:
                wait = self.rate_limits.pop(0)
                return 429, {"Retry-After": wait}, {"ok": False, "error": "ratelimited"}
            if self.server_errors:
                return (
                    self.server_errors.pop(0),
                    {},
                    {"ok": False, "error": "fatal_error"},
                )
            if arguments.get("token") != self.token:
                return 200, {}, {"ok": False, "error": "invalid_auth"}
            if path != "/api/chat.postMessage":
                return 200, {}, {"ok": False, "error": "unknown_method"}
            return self._post_message(arguments)

    def _post_message(
        self, arguments: dict[str, Any]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        channel = str(arguments.get("channel") or "")
        name = channel.removeprefix("#")
        if name in self.not_member_of:
            return 200, {}, {"ok": False, "error": "not_in_channel"}
        channel_id = self.member_of.get(name) or (
            channel if channel in self.member_of.values() else None
        )
        if channel_id is None:
            return 200, {}, {"ok": False, "error": "channel_not_found"}

        refusal = _limit_refusal(arguments)
        if refusal:
            return 200, {}, {"ok": False, "error": refusal}

        message = {**arguments, "channel": channel_id}
        message.pop("token", None)
        self.posted.append(message)
        ts = f"1700000000.{len(self.posted):06d}"
        return (
            200,
            {},
            {"ok": True, "channel": channel_id, "ts": ts, "message": message},
        )


def _limit_refusal(arguments: dict[str, Any]) -> str | None:
    text = str(arguments.get("text") or "")
    blocks = arguments.get("blocks") or []
    if not text and not blocks:
        return "no_text"
    if utf16_length(text) > TEXT_LIMIT:
        return "msg_too_long"
    if len(blocks) > BLOCKS_LIMIT:
        return "invalid_blocks"

    total = 0
    for block in blocks:
        texts = [block["text"]["text"]] if "text" in block else []
        texts += [element["text"] for element in block.get("elements", [])]
        for piece in texts:
            if not piece.strip():
                return "invalid_blocks"
            if block["type"] == "section" and utf16_length(piece) > SECTION_TEXT_LIMIT:
                return "invalid_blocks"
            total += utf16_length(piece)
    return "msg_blocks_too_long" if total > BLOCKS_TEXT_LIMIT else None


def _handler_for(slack: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arguments = _arguments(self.headers.get("Content-Type", ""), raw)
            authorization = self.headers.get("Authorization", "")
            with slack.lock:
                slack.authorizations.append(authorization)
            if authorization.startswith("Bearer "):
                arguments.setdefault("token", authorization.removeprefix("Bearer "))

            status, headers, body = slack.answer(self.path, arguments)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


def _arguments(content_type: str, raw: bytes) -> dict[str, Any]:
    if content_type.startswith("application/json"):
        return dict(json.loads(raw or b"{}"))

    form = {key: values[-1] for key, values in parse_qs(raw.decode()).items()}
    # A form body carries blocks as a JSON string, as Slack documents.
    if "blocks" in form:
        form["blocks"] = json.loads(form["blocks"])
    return dict(form)


@contextmanager
def serving_slack(slack: FakeSlack | None = None) -> Iterator[FakeSlack]:
    """Serve the fake on a free loopback port; `base_url` ends in `/api/`."""
    state = slack or FakeSlack()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/api/"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
