"""Delivery of a finished run to each of its automation's channels.

Every channel gets a `Delivery` saying what happened; a failure never stops the
other channels from being tried. Slack and email channels send through the block
documents named `default` of `WorkjetSlackCredentials` and `WorkjetSmtpServer`,
loaded once per run and only when a channel needs them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from prefect import get_run_logger
from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.exceptions import MissingContextError, ObjectNotFound

from blocks.channels import (
    CHANNEL_BLOCK_DOCUMENT_NAME,
    WorkjetSlackCredentials,
    WorkjetSmtpServer,
)
from flows.channels import (
    EmailChannel,
    SlackChannel,
    StoredChannel,
    WebhookChannel,
    target_of,
)
from flows.ids import deployment_id_of
from flows.mail import default_subject, deliver_email
from flows.record import Delivery, timestamp
from flows.slack import deliver_slack
from flows.webhook import deliver_webhook

NO_OUTPUT = "the model returned no output"

_BlockT = TypeVar("_BlockT", bound=Block)


class SenderMissingError(RuntimeError):
    """The block a channel sends through is not configured in Prefect."""


@dataclass(frozen=True)
class Notice:
    """A short message about a run, sent in place of its output: Slack and email
    send `text` (email under `subject`); a webhook gets the run's body with the
    notice's `event` and its text as `message`."""

    event: str
    text: str
    subject: str


@dataclass(frozen=True)
class _FinishedRun:
    """What the channels send, read from the webhook body that carries it all."""

    automation_id: str
    automation_name: str
    started_at: datetime
    output: str
    body: dict[str, Any]
    subject: str | None = None

    @classmethod
    def of(cls, body: dict[str, Any], notice: Notice | None = None) -> _FinishedRun:
        run = body["run"]
        started = run.get("startedAt")
        if notice is not None:
            body = {**body, "event": notice.event, "message": notice.text}
        return cls(
            automation_id=str(body["automationId"]),
            automation_name=str(body["automationName"]),
            started_at=(
                datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                if started
                else datetime.now(UTC)
            ),
            output=notice.text if notice else str(run.get("output") or ""),
            body=body,
            subject=notice.subject if notice else None,
        )


async def deliver_all(
    channels: list[StoredChannel], body: dict[str, Any], notice: Notice | None = None
) -> list[Delivery]:
    """Send the run in `body` (the webhook body) to every channel, in order, or
    the `notice` about it."""
    run = _FinishedRun.of(body, notice)
    if not run.output.strip():
        return skipped_deliveries(channels, f"not sent: {NO_OUTPUT}")

    senders = _Senders()
    deliveries: list[Delivery] = []
    for channel in channels:
        try:
            delivery = await _deliver(channel, run, senders)
        except SenderMissingError as missing:
            delivery = _failed(channel, str(missing))
        except Exception as error:  # noqa: BLE001
            # One channel's unexpected failure must not cost the run its record
            # or the other channels their delivery.
            delivery = _failed(channel, f"unexpected {type(error).__name__}")
        _log(delivery)
        deliveries.append(delivery)
    return deliveries


def skipped_deliveries(channels: list[StoredChannel], reason: str) -> list[Delivery]:
    """A `skipped` delivery per channel, for a run that has nothing to send."""
    deliveries = [
        Delivery(
            type=channel.type,
            target=target_of(channel),
            status="skipped",
            error=reason,
            at=timestamp(datetime.now(UTC)),
        )
        for channel in channels
    ]
    for delivery in deliveries:
        _log(delivery)
    return deliveries


def delivery_error(deliveries: list[Delivery]) -> str | None:
    """The run's error when a channel failed: each failed channel and why."""
    failed = [d for d in deliveries if d.status == "failed"]
    if not failed:
        return None
    return "; ".join(
        f"delivery to {d.type} {d.target} failed: {d.error}" for d in failed
    )


async def _deliver(
    channel: StoredChannel, run: _FinishedRun, senders: _Senders
) -> Delivery:
    if isinstance(channel, WebhookChannel):
        secret = None
        if channel.secret_block:
            block: Secret[str] = await Secret.aload(channel.secret_block)
            secret = block.get()
        return await deliver_webhook(channel.url, run.body, secret)

    if isinstance(channel, SlackChannel):
        credentials = await senders.load(WorkjetSlackCredentials)
        return await deliver_slack(
            channel.channel, run.output, run.automation_name, credentials
        )

    assert isinstance(channel, EmailChannel)
    server = await senders.load(WorkjetSmtpServer)
    subject = (
        run.subject
        or channel.subject
        or default_subject(
            run.automation_name, run.started_at, await senders.timezone(run)
        )
    )
    return await deliver_email(channel.to, subject, run.output, server)


class _Senders:
    """The blocks and facts the channels of one run need, each read once."""

    def __init__(self) -> None:
        self._blocks: dict[type[Block], Block] = {}
        self._timezone: str | None = None

    async def load(self, block_type: type[_BlockT]) -> _BlockT:
        if block_type not in self._blocks:
            try:
                loaded = await block_type.aload(CHANNEL_BLOCK_DOCUMENT_NAME)
            except ValueError:
                raise SenderMissingError(
                    f"no {block_type.get_block_type_name()} block named"
                    f" '{CHANNEL_BLOCK_DOCUMENT_NAME}' is configured in Prefect"
                ) from None
            self._blocks[block_type] = loaded
        block = self._blocks[block_type]
        assert isinstance(block, block_type)
        return block

    async def timezone(self, run: _FinishedRun) -> str:
        if self._timezone is None:
            self._timezone = await _automation_timezone(run.automation_id)
        return self._timezone


async def _automation_timezone(public_id: str) -> str:
    """The timezone of the automation's schedule, as Prefect holds it."""
    deployment_id = deployment_id_of(public_id)
    if deployment_id is None:
        return "UTC"

    try:
        async with get_client() as client:
            deployment = await client.read_deployment(deployment_id)
    except ObjectNotFound:
        return "UTC"

    for deployment_schedule in deployment.schedules:
        zone = getattr(deployment_schedule.schedule, "timezone", None)
        if zone:
            return str(zone)
    return "UTC"


def _failed(channel: StoredChannel, error: str) -> Delivery:
    return Delivery(
        type=channel.type,
        target=target_of(channel),
        status="failed",
        error=error,
        at=timestamp(datetime.now(UTC)),
    )


def _log(delivery: Delivery) -> None:
    logger = run_logger()
    target = delivery.target
    if delivery.type == "webhook":
        # A webhook's path or query may hold a credential; its origin does not.
        parts = urlsplit(target)
        target = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    if delivery.status == "delivered":
        logger.info(
            "delivered channel=%s target=%s attempts=%d",
            delivery.type,
            target,
            delivery.attempts,
        )
    elif delivery.status == "failed":
        logger.warning(
            "delivery failed channel=%s target=%s attempts=%d error=%s",
            delivery.type,
            target,
            delivery.attempts,
            delivery.error,
        )
    else:
        logger.info(
            "delivery skipped channel=%s target=%s reason=%s",
            delivery.type,
            target,
            delivery.error,
        )


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)
