"""Webhook delivery: a signed JSON body, retried on transient failures.

The body is signed with HMAC-SHA256 over the exact bytes sent, in
`X-Workjet-Signature: sha256=<hex>`. Every attempt carries the same
`X-Workjet-Delivery` id, so a receiver can drop duplicates, and a fresh
`X-Workjet-Timestamp`, so it can refuse old replays. Redirects are not followed: a
signed body must only reach the address its owner configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from flows.record import Delivery

USER_AGENT = "workjet-automations/0.1"
MAX_RETRY_AFTER_SECONDS = 30.0


class WebhookRefusedError(RuntimeError):
    """The URL points somewhere this deployment does not send webhooks."""


def sign(secret: str, raw_body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def allowed_hosts() -> set[str]:
    """Hosts named in WORKJET_WEBHOOK_ALLOWED_HOSTS, which may be private.

    Only names written exactly so in a URL pass: allowing `localhost` lets a local
    receiver work without letting `http://2130706433/` or `http://0x7f.1/` through.
    """
    text = os.environ.get("WORKJET_WEBHOOK_ALLOWED_HOSTS", "")
    return {
        host.strip().strip("[]").lower() for host in text.split(",") if host.strip()
    }


def refusal(url: str, *, unresolved_ok: bool = False) -> str | None:
    """Why a webhook may not be sent to `url`, or None when it may.

    The resolved addresses are judged, not the text. At create and update a name
    that does not resolve (yet) passes with `unresolved_ok`; delivery asks again.
    """
    host = (urlsplit(url).hostname or "").lower()
    if host in allowed_hosts():
        return None

    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return None if unresolved_ok else f"cannot resolve {host}"

    for info in infos:
        if not _public(ipaddress.ip_address(info[4][0])):
            return f"{host} resolves to a private address"
    return None


def check_target(url: str) -> None:
    """Refuse loopback, private, link-local and metadata addresses.

    A production service must not let its users make it call its own network;
    the local stack names its loopback hosts in WORKJET_WEBHOOK_ALLOWED_HOSTS so
    that a receiver on 127.0.0.1 works.
    """
    reason = refusal(url)
    if reason is not None:
        raise WebhookRefusedError(reason)


_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598, carrier NAT


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # An IPv6 address can carry an IPv4 one (`::ffff:127.0.0.1`, 6to4, Teredo);
    # Python 3.11 does not judge the carried address, so it is judged here.
    if isinstance(address, ipaddress.IPv6Address):
        carried = address.ipv4_mapped or address.sixtofour
        if address.teredo:
            carried = address.teredo[1]
        if carried is not None:
            address = carried
    if address in _SHARED_ADDRESS_SPACE:
        return False
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def retryable(status_code: int) -> bool:
    """429 and every 5xx may pass; any other answer would be the same next time."""
    return status_code == 429 or 500 <= status_code <= 599


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retry_delay(response: httpx.Response | None, attempt: int) -> float:
    if response is not None and "retry-after" in response.headers:
        try:
            return min(float(response.headers["retry-after"]), MAX_RETRY_AFTER_SECONDS)
        except ValueError:
            pass
    return min(0.5 * 2**attempt, MAX_RETRY_AFTER_SECONDS)


async def deliver_webhook(
    url: str,
    body: dict[str, Any],
    secret: str | None,
    *,
    max_attempts: int = 3,
    timeout_seconds: float = 10.0,
) -> Delivery:
    """POST the body to the URL; a Delivery says how it went, it never raises."""
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    delivery_id = str(uuid.uuid4())
    try:
        check_target(url)
    except WebhookRefusedError as refused:
        return Delivery(
            type="webhook", target=url, status="failed", error=str(refused), at=_now()
        )

    error = "not attempted"
    async with httpx.AsyncClient(
        timeout=timeout_seconds, follow_redirects=False
    ) as client:
        for attempt in range(1, max_attempts + 1):
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-Workjet-Delivery": delivery_id,
                "X-Workjet-Timestamp": str(int(time.time())),
            }
            if secret:
                headers["X-Workjet-Signature"] = sign(secret, raw)

            response: httpx.Response | None = None
            try:
                response = await client.post(url, content=raw, headers=headers)
            except httpx.TransportError as transport_error:
                error = f"{type(transport_error).__name__} after {attempt} attempt(s)"
            else:
                if response.is_success:
                    return Delivery(
                        type="webhook",
                        target=url,
                        status="delivered",
                        attempts=attempt,
                        at=_now(),
                    )
                error = f"HTTP {response.status_code}"
                if not retryable(response.status_code):
                    return Delivery(
                        type="webhook",
                        target=url,
                        status="failed",
                        attempts=attempt,
                        error=error,
                        at=_now(),
                    )

            if attempt < max_attempts:
                await asyncio.sleep(_retry_delay(response, attempt))

    return Delivery(
        type="webhook",
        target=url,
        status="failed",
        attempts=max_attempts,
        error=error,
        at=_now(),
    )
