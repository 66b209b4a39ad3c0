"""Webhook delivery (flows.webhook) against a real HTTP receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from flows import webhook
from flows.webhook import (
    MAX_RETRY_AFTER_SECONDS,
    USER_AGENT,
    deliver_webhook,
    sign,
)

SECRET = "whsec_test_0123456789"
BODY: dict[str, Any] = {
    "automationId": "auto_0b6e3f3c8a594d6c9a524f1e2d3c4b5a",
    "automationName": "Morning digest",
    "run": {"status": "success", "output": 'Ünïcode ✓ and "quotes"', "n": 1.5},
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next scripted status and records what came."""

    base_url: str
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    redirect_to: str = "/elsewhere"

    def url(self, path: str = "/hook") -> str:
        return f"{self.base_url}{path}"

    def paths(self) -> list[str]:
        return [request.path for request in self.received]


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with lock:
                receiver.received.append(
                    Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body
                    )
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200

            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", receiver.url(receiver.redirect_to))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(base_url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKJET_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make backoff instant; returns the attempt numbers it was asked about."""
    asked: list[int] = []

    def quick(response: httpx.Response | None, attempt: int) -> float:
        asked.append(attempt)
        return 0.01

    monkeypatch.setattr(webhook, "_retry_delay", quick)
    return asked


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.usefixtures("allow_private")
class TestDelivered:
    async def test_signature_is_hmac_sha256_of_the_raw_received_body(
        self, receiver: Receiver
    ) -> None:
        result = await deliver_webhook(receiver.url(), BODY, SECRET)

        [request] = receiver.received
        expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-workjet-signature"] == f"sha256={expected}"
        assert request.headers["x-workjet-signature"] == sign(SECRET, request.body)
        assert json.loads(request.body) == BODY
        assert result.status == "delivered"
        assert result.attempts == 1
        assert result.error is None

    async def test_request_carries_json_identity_and_time_headers(
        self, receiver: Receiver
    ) -> None:
        await deliver_webhook(receiver.url(), BODY, SECRET)

        [request] = receiver.received
        assert request.path == "/hook"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == USER_AGENT
        assert request.headers["x-workjet-timestamp"].isdigit()
        assert len(request.headers["x-workjet-delivery"]) == 36

    async def test_without_secret_no_signature_is_sent(
        self, receiver: Receiver
    ) -> None:
        result = await deliver_webhook(receiver.url(), BODY, None)

        [request] = receiver.received
        assert "x-workjet-signature" not in request.headers
        assert result.status == "delivered"

    async def test_delivery_reports_its_target_and_time(
        self, receiver: Receiver
    ) -> None:
        result = await deliver_webhook(receiver.url(), BODY, SECRET)

        assert result.type == "webhook"
        assert result.target == receiver.url()
        assert result.at is not None and result.at.endswith("Z")


@pytest.mark.usefixtures("allow_private")
class TestRetries:
    async def test_two_server_errors_then_success_is_delivered_on_third_attempt(
        self, receiver: Receiver, fast_retries: list[int]
    ) -> None:
        receiver.statuses = [500, 500, 200]

        result = await deliver_webhook(receiver.url(), BODY, SECRET)

        assert result.status == "delivered"
        assert result.attempts == 3
        assert result.error is None
        assert len(receiver.received) == 3
        ids = {request.headers["x-workjet-delivery"] for request in receiver.received}
        assert len(ids) == 1
        bodies = {request.body for request in receiver.received}
        assert len(bodies) == 1
        for request in receiver.received:
            expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256)
            assert request.headers["x-workjet-signature"] == (
                f"sha256={expected.hexdigest()}"
            )
        assert fast_retries == [1, 2]

    async def test_server_errors_on_every_attempt_fail_after_all_attempts(
        self, receiver: Receiver, fast_retries: list[int]
    ) -> None:
        receiver.statuses = [503, 502, 429]

        result = await deliver_webhook(receiver.url(), BODY, SECRET)

        assert result.status == "failed"
        assert result.attempts == 3
        assert result.error == "HTTP 429"
        assert len(receiver.received) == 3

    @pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
    async def test_client_error_fails_at_once_without_retry(
        self, receiver: Receiver, fast_retries: list[int], status: int
    ) -> None:
        receiver.statuses = [status, 200]

        result = await deliver_webhook(receiver.url(), BODY, SECRET)

        assert result.status == "failed"
        assert result.attempts == 1
        assert result.error == f"HTTP {status}"
        assert len(receiver.received) == 1
        assert fast_retries == []

    async def test_redirect_is_not_followed(
        self, receiver: Receiver, fast_retries: list[int]
    ) -> None:
        receiver.statuses = [302]

        result = await deliver_webhook(receiver.url("/hook"), BODY, SECRET)

        assert result.status == "failed"
        assert result.attempts == 1
        assert result.error == "HTTP 302"
        assert receiver.paths() == ["/hook"]

    async def test_unreachable_receiver_fails_after_all_attempts(
        self, fast_retries: list[int]
    ) -> None:
        url = f"http://127.0.0.1:{closed_port()}/hook"

        result = await deliver_webhook(url, BODY, SECRET, timeout_seconds=2)

        assert result.status == "failed"
        assert result.attempts == 3
        assert result.error == "ConnectError after 3 attempt(s)"


class TestPrivateTargets:
    async def test_loopback_is_refused_unless_its_host_is_named(
        self, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("WORKJET_WEBHOOK_ALLOWED_HOSTS", raising=False)

        result = await deliver_webhook(receiver.url(), BODY, SECRET)

        assert result.status == "failed"
        assert result.attempts == 0
        assert result.error == "127.0.0.1 resolves to a private address"
        assert receiver.received == []

    @pytest.mark.parametrize(
        "url",
        [
            "http://2130706433/hook",
            "http://0x7f.1/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://169.254.169.254/latest/meta-data",
        ],
    )
    def test_a_named_host_allows_that_name_and_no_other_spelling(
        self, monkeypatch: pytest.MonkeyPatch, url: str
    ) -> None:
        monkeypatch.setenv(
            "WORKJET_WEBHOOK_ALLOWED_HOSTS", "localhost, 127.0.0.1,[::1]"
        )

        assert webhook.refusal("http://localhost:8080/hook") is None
        assert webhook.refusal("http://127.0.0.1/hook") is None
        assert webhook.refusal("http://[::1]:9000/hook") is None
        assert (
            webhook.refusal(url)
            == f"{urlsplit(url).hostname} resolves to a private address"
        )

    def test_an_unresolvable_name_passes_only_where_delivery_asks_again(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("WORKJET_WEBHOOK_ALLOWED_HOSTS", raising=False)
        url = "https://receiver.invalid/hook"

        assert webhook.refusal(url, unresolved_ok=True) is None
        assert webhook.refusal(url) == "cannot resolve receiver.invalid"

    @pytest.mark.parametrize(
        "url",
        [
            "http://10.0.0.8/hook",
            "http://192.168.1.1/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:8080/hook",
        ],
    )
    def test_private_and_link_local_addresses_are_refused(
        self, monkeypatch: pytest.MonkeyPatch, url: str
    ) -> None:
        monkeypatch.delenv("WORKJET_WEBHOOK_ALLOWED_HOSTS", raising=False)

        with pytest.raises(webhook.WebhookRefusedError):
            webhook.check_target(url)


class TestRetryDelay:
    def test_backoff_doubles_per_attempt(self) -> None:
        delays = [webhook._retry_delay(None, attempt) for attempt in (1, 2, 3)]

        assert delays == [1.0, 2.0, 4.0]

    def test_backoff_is_capped(self) -> None:
        assert webhook._retry_delay(None, 20) == MAX_RETRY_AFTER_SECONDS

    def test_retry_after_header_is_honoured_and_capped(self) -> None:
        soon = httpx.Response(503, headers={"Retry-After": "2"})
        late = httpx.Response(429, headers={"Retry-After": "3600"})
        unreadable = httpx.Response(429, headers={"Retry-After": "soon"})

        assert webhook._retry_delay(soon, 1) == 2.0
        assert webhook._retry_delay(late, 1) == MAX_RETRY_AFTER_SECONDS
        assert webhook._retry_delay(unreadable, 2) == 2.0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://2130706433/hook",
        "http://0x7f.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/hook",
        "http://10.0.0.5/hook",
        "http://100.64.0.1/hook",
        "http://[2002:7f00:1::]/hook",
    ],
)
def test_addresses_that_resolve_to_this_network_are_refused(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKJET_WEBHOOK_ALLOWED_HOSTS", raising=False)

    with pytest.raises(webhook.WebhookRefusedError):
        webhook.check_target(url)
