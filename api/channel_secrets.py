"""Webhook secrets, kept as Prefect Secret blocks and never in parameters.

A channel in the deployment's parameters names its secret's block; the secret
itself is written once and read only by the run that signs with it.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from prefect.blocks.system import Secret
from prefect.client.orchestration import PrefectClient
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr

from api.errors import InvalidRequestError
from api.mapping import store_channel
from api.schemas import ChannelIn, WebhookChannelIn
from flows.channels import WebhookChannel
from flows.webhook import refusal


class ChannelSecrets:
    def __init__(self, client: PrefectClient) -> None:
        self.client = client

    async def store(
        self, channels: list[ChannelIn], previous: list[Any]
    ) -> list[dict[str, Any]]:
        """Channels for the parameters; webhook secrets go to Prefect Secret blocks.

        A webhook sent again without its secret keeps the secret already stored for
        the same URL, since secrets are write-only and a client cannot echo them.
        """
        kept = {
            c.url: c.secret_block
            for c in previous
            if isinstance(c, WebhookChannel) and c.secret_block
        }
        await _check_webhook_targets(channels)

        stored: list[dict[str, Any]] = []
        for channel in channels:
            secret_block = None
            if isinstance(channel, WebhookChannelIn):
                if channel.secret:
                    secret_block = f"workjet-webhook-{secrets.token_hex(8)}"
                    await Secret(value=SecretStr(channel.secret)).asave(
                        secret_block, client=self.client
                    )
                else:
                    secret_block = kept.get(channel.url)
            stored.append(store_channel(channel, secret_block))
        return stored

    async def forget(self, previous: list[Any], current: list[Any]) -> None:
        in_use = {c.secret_block for c in current if isinstance(c, WebhookChannel)}
        for channel in previous:
            if not isinstance(channel, WebhookChannel) or not channel.secret_block:
                continue
            if channel.secret_block in in_use:
                continue
            try:
                document = await self.client.read_block_document_by_name(
                    channel.secret_block, "secret", include_secrets=False
                )
                await self.client.delete_block_document(document.id)
            except ObjectNotFound:
                pass


async def _check_webhook_targets(channels: list[ChannelIn]) -> None:
    """Refuse a webhook to this network before anything is stored; delivery checks
    again, since what a name resolves to can change."""
    for index, channel in enumerate(channels):
        if not isinstance(channel, WebhookChannelIn):
            continue
        reason = await asyncio.to_thread(refusal, channel.url, unresolved_ok=True)
        if reason is not None:
            param = f"channels[{index}].url"
            raise InvalidRequestError(
                f"{param}: webhooks may not be sent there ({reason}); "
                "a local receiver's host can be allowed with "
                "WORKJET_WEBHOOK_ALLOWED_HOSTS",
                param=param,
            )
