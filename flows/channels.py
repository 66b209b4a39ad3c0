"""Output channels as they are stored in a deployment's parameters.

Secrets never travel here: a webhook's signing secret is a Prefect `Secret` block,
and the channel keeps only that block's name.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Channel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SlackChannel(_Channel):
    type: Literal["slack"] = "slack"
    channel: str


class EmailChannel(_Channel):
    type: Literal["email"] = "email"
    to: list[str]
    subject: str | None = None


class WebhookChannel(_Channel):
    type: Literal["webhook"] = "webhook"
    url: str
    secret_block: str | None = Field(
        default=None, description="Name of the Prefect Secret block that signs bodies."
    )


StoredChannel = Annotated[
    SlackChannel | EmailChannel | WebhookChannel, Field(discriminator="type")
]


def target_of(channel: SlackChannel | EmailChannel | WebhookChannel) -> str:
    if isinstance(channel, SlackChannel):
        return channel.channel
    if isinstance(channel, EmailChannel):
        return ", ".join(channel.to)
    return channel.url
