"""Dispatch of a finished run to its channels (flows.delivery), the channel
blocks (blocks.channels) and the rules a channel must meet at create time.

Block documents are handed to the dispatcher directly here; loading them from a
real Prefect server is covered by tests/integration/test_deliveries.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prefect.blocks.core import Block
from pydantic import SecretStr, ValidationError
from slack_sdk import WebClient

from api.schemas import EmailChannelIn, SlackChannelIn
from blocks.channels import WorkjetSlackCredentials, WorkjetSmtpServer
from flows import delivery
from flows.channels import EmailChannel, SlackChannel, StoredChannel, WebhookChannel
from flows.delivery import (
    NO_OUTPUT,
    Notice,
    deliver_all,
    delivery_error,
    skipped_deliveries,
)
from flows.record import Delivery
from flows.webhook import retryable
from tests.fakes.slack_api import TOKEN, FakeSlack, serving_slack
from tests.fakes.smtp import SmtpServer, serving_smtp

AUTOMATION_ID = "auto_0b6e3f3c8a594d6c9a524f1e2d3c4b5a"
CHANNELS: list[StoredChannel] = [
    SlackChannel(channel="#docs-team"),
    EmailChannel(to=["ana@example.com", "bo@example.org"]),
]


def body(output: str | None) -> dict[str, Any]:
    return {
        "automationId": AUTOMATION_ID,
        "automationName": "Docs digest",
        "run": {
            "id": "run_5d1c",
            "startedAt": "2026-04-14T03:30:00Z",
            "status": "success",
            "output": output,
        },
    }


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with serving_slack() as state:
        yield state


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with serving_smtp() as server:
        yield server


@pytest.fixture
def configured(
    monkeypatch: pytest.MonkeyPatch, fake_slack: FakeSlack, smtp: SmtpServer
) -> list[str]:
    """Blocks as if saved in Prefect, a Los Angeles schedule; names of loads."""
    loads: list[str] = []
    blocks: dict[type, Any] = {
        WorkjetSlackCredentials: WorkjetSlackCredentials(
            token=SecretStr(TOKEN), base_url=fake_slack.base_url
        ),
        WorkjetSmtpServer: WorkjetSmtpServer(
            host=smtp.host,
            port=smtp.port,
            security="none",
            from_address="workjet@example.com",
        ),
    }

    async def load(cls: type, name: str, **_: Any) -> Any:
        loads.append(f"{cls.__name__}/{name}")
        return blocks[cls]

    async def timezone(public_id: str) -> str:
        assert public_id == AUTOMATION_ID
        return "America/Los_Angeles"

    for block_type in blocks:
        monkeypatch.setattr(block_type, "aload", classmethod(load))
    monkeypatch.setattr(delivery, "_automation_timezone", timezone)
    return loads


class TestDeliverAll:
    async def test_every_channel_gets_the_output_and_a_delivery(
        self,
        configured: list[str],
        fake_slack: FakeSlack,
        smtp: SmtpServer,
    ) -> None:
        deliveries = await deliver_all(CHANNELS, body("**Two** pages are outdated."))

        assert [(d.type, d.target, d.status, d.attempts) for d in deliveries] == [
            ("slack", "#docs-team", "delivered", 1),
            ("email", "ana@example.com, bo@example.org", "delivered", 1),
        ]
        assert fake_slack.sections() == ["*Two* pages are outdated."]
        [received] = smtp.inbox.received
        assert received.recipients == ["ana@example.com", "bo@example.org"]
        # 03:30Z on the 14th is still the 13th in Los Angeles.
        assert received.message["Subject"] == "Docs digest — 2026-04-13"
        assert configured == [
            "WorkjetSlackCredentials/default",
            "WorkjetSmtpServer/default",
        ]

    async def test_a_notice_is_sent_in_place_of_the_output_under_its_subject(
        self, configured: list[str], fake_slack: FakeSlack, smtp: SmtpServer
    ) -> None:
        channels: list[StoredChannel] = [
            SlackChannel(channel="#docs-team"),
            EmailChannel(to=["ana@example.com"], subject="Weekly docs"),
        ]
        notice = Notice(event="failure", text="**Docs digest** failed.", subject="x")

        deliveries = await deliver_all(channels, body("The output."), notice)

        assert [d.status for d in deliveries] == ["delivered", "delivered"]
        assert fake_slack.sections() == ["*Docs digest* failed."]
        [received] = smtp.inbox.received
        assert received.message["Subject"] == "x"
        assert "The output." not in received.message.as_string()

    async def test_the_channel_subject_replaces_the_default(
        self, configured: list[str], smtp: SmtpServer
    ) -> None:
        channel = EmailChannel(to=["ana@example.com"], subject="Weekly docs")

        await deliver_all([channel], body("Fine."))

        assert smtp.inbox.received[0].message["Subject"] == "Weekly docs"

    @pytest.mark.parametrize("output", [None, "", "  \n\n  "])
    async def test_empty_output_sends_nothing_and_skips_every_channel(
        self,
        configured: list[str],
        fake_slack: FakeSlack,
        smtp: SmtpServer,
        output: str | None,
    ) -> None:
        deliveries = await deliver_all(CHANNELS, body(output))

        assert [(d.type, d.status, d.attempts) for d in deliveries] == [
            ("slack", "skipped", 0),
            ("email", "skipped", 0),
        ]
        assert {d.error for d in deliveries} == {f"not sent: {NO_OUTPUT}"}
        assert fake_slack.requests == 0
        assert smtp.inbox.received == []
        assert delivery_error(deliveries) is None

    async def test_a_missing_block_fails_that_channel_only(
        self, configured: list[str], monkeypatch: pytest.MonkeyPatch, smtp: SmtpServer
    ) -> None:
        async def missing(cls: type, name: str, **_: Any) -> Any:
            raise ValueError(f"Unable to find block document named {name}")

        monkeypatch.setattr(WorkjetSlackCredentials, "aload", classmethod(missing))

        slack, email = await deliver_all(CHANNELS, body("Fine."))

        assert slack.status == "failed"
        assert slack.error == (
            "no Workjet Slack Credentials block named 'default' is configured in"
            " Prefect"
        )
        assert email.status == "delivered"

    async def test_one_line_is_logged_per_delivery_without_secrets(
        self,
        configured: list[str],
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        async def refused(url: str, *_: Any) -> Delivery:
            return Delivery(
                type="webhook",
                target=url,
                status="failed",
                attempts=1,
                error="HTTP 400",
            )

        monkeypatch.setattr(delivery, "deliver_webhook", refused)
        hook = WebhookChannel(url="https://hooks.example.com/T000/B000/s3cretpath")

        with caplog.at_level(logging.INFO, logger="flows.delivery"):
            await deliver_all([*CHANNELS, hook], body("Fine."))

        assert caplog.messages == [
            "delivered channel=slack target=#docs-team attempts=1",
            "delivered channel=email target=ana@example.com, bo@example.org attempts=1",
            "delivery failed channel=webhook target=https://hooks.example.com"
            " attempts=1 error=HTTP 400",
        ]
        assert TOKEN not in caplog.text


class TestRunError:
    def test_failed_channels_are_named_with_their_reason(self) -> None:
        deliveries = [
            Delivery(type="email", target="ana@example.com", status="delivered"),
            Delivery(
                type="slack",
                target="#private-team",
                status="failed",
                attempts=1,
                error="not_in_channel (invite the Slack app to the channel)",
            ),
        ]

        assert delivery_error(deliveries) == (
            "delivery to slack #private-team failed:"
            " not_in_channel (invite the Slack app to the channel)"
        )

    def test_skipped_and_delivered_channels_are_not_errors(self) -> None:
        skipped = skipped_deliveries(CHANNELS, "not sent: the model returned no output")

        assert delivery_error(skipped) is None
        assert [d.target for d in skipped] == [
            "#docs-team",
            "ana@example.com, bo@example.org",
        ]


class TestWebhookRetries:
    @pytest.mark.parametrize("status", [429, 500, 501, 502, 503, 504, 520, 599])
    def test_rate_limits_and_every_server_error_are_retried(self, status: int) -> None:
        assert retryable(status)

    @pytest.mark.parametrize("status", [300, 302, 400, 401, 403, 404, 409, 422])
    def test_other_answers_are_final(self, status: int) -> None:
        assert not retryable(status)


class TestChannelBlocks:
    @pytest.mark.parametrize("block", [WorkjetSlackCredentials, WorkjetSmtpServer])
    def test_every_field_is_described(self, block: type[Block]) -> None:
        fields = block.model_fields
        assert fields
        assert all(info.description for info in fields.values())

    def test_slack_client_talks_to_the_configured_base_url(self) -> None:
        block = WorkjetSlackCredentials(
            token=SecretStr("xoxb-1"), base_url="http://127.0.0.1:9/api"
        )

        client = block.get_client()

        assert isinstance(client, WebClient)
        assert client.base_url == "http://127.0.0.1:9/api/"
        assert client.retry_handlers == []
        assert "xoxb-1" not in repr(block)

    @pytest.mark.parametrize(
        ("security", "port"), [("ssl", 465), ("starttls", 587), ("none", 25)]
    )
    def test_smtp_port_follows_security_unless_set(
        self, security: str, port: int
    ) -> None:
        block = WorkjetSmtpServer.model_validate(
            {"host": "smtp.example.com", "security": security, "from_address": "a@b.co"}
        )

        assert block.effective_port == port
        assert block.model_copy(update={"port": 2525}).effective_port == 2525

    def test_smtp_password_is_never_shown(self) -> None:
        block = WorkjetSmtpServer(
            host="smtp.example.com",
            username="bot",
            password=SecretStr("hunter2-secret"),
            from_address="workjet@example.com",
        )

        assert "hunter2-secret" not in repr(block)
        assert "hunter2-secret" not in str(block.model_dump())

    @pytest.mark.parametrize("address", ["workjet", "a@b", "Workjet <a@b.co>"])
    def test_sender_must_be_an_address(self, address: str) -> None:
        with pytest.raises(ValidationError, match="is not an email address"):
            WorkjetSmtpServer(host="smtp.example.com", from_address=address)


class TestChannelRules:
    @pytest.mark.parametrize("target", ["#docs-team", "C0123456789", "G01ABCDEF23"])
    def test_slack_names_and_ids_are_accepted(self, target: str) -> None:
        assert SlackChannelIn(type="slack", channel=target).channel == target

    @pytest.mark.parametrize("target", ["docs-team", "#Docs Team", "@someone", ""])
    def test_implausible_slack_targets_are_refused(self, target: str) -> None:
        with pytest.raises(ValidationError, match="is not a Slack channel"):
            SlackChannelIn(type="slack", channel=target)

    @pytest.mark.parametrize("subject", ["Hi\r\nBcc: eve@example.com", "a\nb", "\t"])
    def test_a_subject_cannot_smuggle_headers(self, subject: str) -> None:
        with pytest.raises(ValidationError, match="one line"):
            EmailChannelIn(type="email", to=["ana@example.com"], subject=subject)
