"""Delivery of a finished run to each of its automation's channels.

Every channel gets a `Delivery` saying what happened; a failure never stops the
other channels from being tried.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect.blocks.system import Secret

from flows.channels import StoredChannel, WebhookChannel, target_of
from flows.record import Delivery, timestamp
from flows.webhook import deliver_webhook


async def deliver_all(
    channels: list[StoredChannel], body: dict[str, Any]
) -> list[Delivery]:
    deliveries: list[Delivery] = []

    for channel in channels:
        if isinstance(channel, WebhookChannel):
            secret = None
            if channel.secret_block:
                block: Secret[str] = await Secret.aload(channel.secret_block)
                secret = block.get()
            deliveries.append(await deliver_webhook(channel.url, body, secret))
        else:
            deliveries.append(
                Delivery(
                    type=channel.type,
                    target=target_of(channel),
                    status="failed",
                    error=f"{channel.type} delivery is not available in this build yet",
                    at=timestamp(datetime.now(UTC)),
                )
            )
    return deliveries
