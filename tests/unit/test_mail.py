"""Email delivery (flows.mail) through smtplib to a real aiosmtpd server on
loopback (tests/fakes/smtp.py): plain SMTP, STARTTLS and SMTPS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from pydantic import SecretStr

from blocks.channels import WorkjetSmtpServer
from flows import mail
from flows.mail import default_subject, deliver_email
from tests.fakes.smtp import (
    Inbox,
    SmtpServer,
    free_port,
    self_signed_context,
    serving_smtp,
)

SENDER = "workjet@example.com"
RECIPIENTS = ["ana@example.com", "bo@example.org"]
SUBJECT = "Docs digest — 2026-04-14"
MARKDOWN = "## Findings\n\n- The **install** page is outdated.\n- `pip` <b>1.0</b>"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with serving_smtp() as server:
        yield server


@pytest.fixture
def server_block(smtp: SmtpServer) -> WorkjetSmtpServer:
    return WorkjetSmtpServer(
        host=smtp.host, port=smtp.port, security="none", from_address=SENDER
    )


@pytest.fixture
def tls_context(tmp_path: Path) -> ssl.SSLContext:
    return self_signed_context(tmp_path)


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record each wait between attempts instead of sleeping it."""
    asked: list[float] = []

    async def record(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(mail, "_pause", record)
    return asked


def parts(message: EmailMessage) -> dict[str, str]:
    """Each part's text as a mail client shows it (SMTP carries CRLF line ends)."""
    return {
        part.get_content_type(): str(part.get_content()).replace("\r\n", "\n")
        for part in message.iter_parts()
    }


class TestMessage:
    async def test_one_message_reaches_every_recipient_with_subject_and_both_parts(
        self, smtp: SmtpServer, server_block: WorkjetSmtpServer
    ) -> None:
        result = await deliver_email(RECIPIENTS, SUBJECT, MARKDOWN, server_block)

        assert result.status == "delivered", result.error
        assert result.attempts == 1
        assert result.target == "ana@example.com, bo@example.org"
        [received] = smtp.inbox.received
        assert received.sender == SENDER
        assert received.recipients == RECIPIENTS
        message = received.message
        assert message["Subject"] == SUBJECT
        assert message["From"] == SENDER
        assert message["To"] == "ana@example.com, bo@example.org"
        assert message.get_content_type() == "multipart/alternative"
        bodies = parts(message)
        assert list(bodies) == ["text/plain", "text/html"]
        assert bodies["text/plain"] == MARKDOWN + "\n"
        html = bodies["text/html"]
        assert "<h2>Findings</h2>" in html
        assert "<li>The <strong>install</strong> page is outdated.</li>" in html
        assert "<code>pip</code> &lt;b&gt;1.0&lt;/b&gt;" in html

    def test_default_subject_names_the_automation_and_its_local_date(self) -> None:
        started = datetime(2026, 4, 14, 3, 30, tzinfo=UTC)

        assert (
            default_subject("Docs  digest\n", started, "America/Los_Angeles")
            == "Docs digest — 2026-04-13"
        )
        assert default_subject("Docs digest", started, "Asia/Tokyo") == (
            "Docs digest — 2026-04-14"
        )

    async def test_message_has_date_and_message_id_of_the_sender_domain(
        self, smtp: SmtpServer, server_block: WorkjetSmtpServer
    ) -> None:
        await deliver_email(RECIPIENTS, SUBJECT, MARKDOWN, server_block)

        message = smtp.inbox.received[0].message
        assert message["Date"].datetime.utcoffset() == timedelta(0)
        assert message["Message-ID"].endswith("@example.com>")


class TestSecurity:
    async def test_starttls_with_login_is_delivered(
        self, tls_context: ssl.SSLContext
    ) -> None:
        with serving_smtp(
            security="starttls", tls_context=tls_context, login=("bot", "pa55word")
        ) as smtp:
            block = WorkjetSmtpServer(
                host=smtp.host,
                port=smtp.port,
                security="starttls",
                verify_tls=False,
                username="bot",
                password=SecretStr("pa55word"),
                from_address=SENDER,
            )

            result = await deliver_email(RECIPIENTS, SUBJECT, MARKDOWN, block)

        assert result.status == "delivered", result.error
        assert [r.recipients for r in smtp.inbox.received] == [RECIPIENTS]
        assert "pa55word" not in result.model_dump_json()

    async def test_ssl_from_the_first_byte_is_delivered(
        self, tls_context: ssl.SSLContext
    ) -> None:
        with serving_smtp(security="ssl", tls_context=tls_context) as smtp:
            block = WorkjetSmtpServer(
                host=smtp.host,
                port=smtp.port,
                security="ssl",
                verify_tls=False,
                from_address=SENDER,
            )

            result = await deliver_email(RECIPIENTS, SUBJECT, MARKDOWN, block)

        assert result.status == "delivered", result.error
        assert len(smtp.inbox.received) == 1

    async def test_unverifiable_certificate_fails_without_retry(
        self, tls_context: ssl.SSLContext, pauses: list[float]
    ) -> None:
        with serving_smtp(security="starttls", tls_context=tls_context) as smtp:
            block = WorkjetSmtpServer(
                host=smtp.host, port=smtp.port, security="starttls", from_address=SENDER
            )

            result = await deliver_email(RECIPIENTS, SUBJECT, MARKDOWN, block)

        assert result.status == "failed"
        assert result.error == "TLS failed: CERTIFICATE_VERIFY_FAILED"
        assert result.attempts == 1
        assert smtp.inbox.received == []

    async def test_wrong_password_fails_without_retry(
        self, tls_context: ssl.SSLContext, pauses: list[float]
    ) -> None:
        with serving_smtp(
            security="starttls", tls_context=tls_context, login=("bot", "pa55word")
        ) as smtp:
            block = WorkjetSmtpServer(
                host=smtp.host,
                port=smtp.port,
                security="starttls",
                verify_tls=False,
                username="bot",
                password=SecretStr("wrong-secret"),
                from_address=SENDER,
            )

            result = await deliver_email(RECIPIENTS, SUBJECT, MARKDOWN, block)

        assert result.status == "failed"
        assert result.error is not None and result.error.startswith("SMTP 535")
        assert "wrong-secret" not in result.error
        assert result.attempts == 1


class TestRetries:
    async def test_temporary_refusal_is_retried_then_delivered_once(
        self, smtp: SmtpServer, server_block: WorkjetSmtpServer, pauses: list[float]
    ) -> None:
        smtp.inbox.refusals = ["451 4.3.0 Try again later"]

        result = await deliver_email(RECIPIENTS, SUBJECT, MARKDOWN, server_block)

        assert result.status == "delivered"
        assert result.attempts == 2
        assert smtp.inbox.data_attempts == 2
        assert len(smtp.inbox.received) == 1
        assert pauses == [1.0]

    async def test_permanent_refusal_fails_at_once(
        self, smtp: SmtpServer, server_block: WorkjetSmtpServer, pauses: list[float]
    ) -> None:
        smtp.inbox.refusals = ["554 5.7.1 Message rejected"]

        result = await deliver_email(RECIPIENTS, SUBJECT, MARKDOWN, server_block)

        assert result.status == "failed"
        assert result.error == "SMTP 554 5.7.1 Message rejected"
        assert result.attempts == 1
        assert pauses == []

    async def test_a_refused_recipient_fails_the_delivery_without_resending(
        self, server_block: WorkjetSmtpServer, pauses: list[float]
    ) -> None:
        inbox = Inbox(refused_recipients={"bo@example.org": "550 5.1.1 No such user"})
        with serving_smtp(inbox=inbox) as smtp:
            block = server_block.model_copy(update={"port": smtp.port})

            result = await deliver_email(RECIPIENTS, SUBJECT, MARKDOWN, block)

        assert result.status == "failed"
        assert result.error == "refused bo@example.org (SMTP 550 5.1.1 No such user)"
        assert result.attempts == 1
        assert [r.recipients for r in inbox.received] == [["ana@example.com"]]

    async def test_unreachable_server_fails_after_all_attempts(
        self, pauses: list[float]
    ) -> None:
        block = WorkjetSmtpServer(
            host="127.0.0.1", port=free_port(), security="none", from_address=SENDER
        )

        result = await deliver_email(RECIPIENTS, SUBJECT, MARKDOWN, block)

        assert result.status == "failed"
        assert result.error == "cannot reach the SMTP server (ConnectionRefusedError)"
        assert result.attempts == 3
        assert pauses == [1.0, 2.0]
