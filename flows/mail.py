"""Email delivery: one message per run to every recipient of the channel.

The message has two parts: the model's Markdown as the plain-text part (Markdown
is written to read well as plain text) and HTML rendered from it by markdown-it.
Raw HTML in the output is escaped rather than passed through, so a model cannot
put markup of its own into someone's mailbox.

SMTP answers 4xx for "try again later" and 5xx for "never": 4xx answers, a lost
connection and timeouts are retried with backoff; 5xx answers, TLS failures and
a login refused are not. A message some recipients refused is not sent again,
since the others already have it.

(The module is not called `email` so that it does not hide the standard library's
package of that name.)
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal
from zoneinfo import ZoneInfo

from markdown_it import MarkdownIt

from blocks.channels import WorkjetSmtpServer
from flows.record import Delivery, timestamp

MAX_BACKOFF_SECONDS = 30.0
_HTML = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])

# The wait between attempts, a name of its own so that tests can observe it.
_pause = asyncio.sleep


def default_subject(automation_name: str, started_at: datetime, timezone: str) -> str:
    """The automation's name and the run's date where the automation runs."""
    local = started_at.astimezone(ZoneInfo(timezone))
    return f"{' '.join(automation_name.split())} — {local:%Y-%m-%d}"


def render_html(markdown: str) -> str:
    body = _HTML.render(markdown)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        f"<body>\n{body}</body></html>\n"
    )


def build_message(
    *, sender: str, recipients: list[str], subject: str, markdown: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    message.set_content(markdown)
    message.add_alternative(render_html(markdown), subtype="html")
    return message


async def deliver_email(
    recipients: list[str],
    subject: str,
    markdown: str,
    server: WorkjetSmtpServer,
    *,
    max_attempts: int = 3,
) -> Delivery:
    """Send one message to all recipients; a Delivery says how it went, it never
    raises."""
    target = ", ".join(recipients)
    message = build_message(
        sender=server.from_address,
        recipients=recipients,
        subject=subject,
        markdown=markdown,
    )
    error = "not attempted"

    for attempt in range(1, max_attempts + 1):
        try:
            # smtplib blocks; a thread keeps the flow's event loop free.
            refused = await asyncio.to_thread(_send, server, message)
        except (smtplib.SMTPException, OSError) as failure:
            error, retry = _explain(failure)
            if not retry:
                return _delivery(target, "failed", attempt, error)
        else:
            if refused:
                return _delivery(target, "failed", attempt, _refusals(refused))
            return _delivery(target, "delivered", attempt, None)

        if attempt < max_attempts:
            await _pause(min(0.5 * 2**attempt, MAX_BACKOFF_SECONDS))

    return _delivery(target, "failed", max_attempts, error)


def _send(
    server: WorkjetSmtpServer, message: EmailMessage
) -> dict[str, tuple[int, bytes]]:
    with server.get_client() as smtp:
        return smtp.send_message(message)


def _explain(failure: Exception) -> tuple[str, bool]:
    """The error for the run record, and whether trying again may help."""
    if isinstance(failure, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in failure.recipients.values()]
        transient = all(400 <= code < 500 for code in codes)
        return _refusals(failure.recipients), transient
    if isinstance(failure, smtplib.SMTPResponseException):
        code = failure.smtp_code
        return f"SMTP {code} {_text(failure.smtp_error)}", 400 <= code < 500
    if isinstance(failure, ssl.SSLError):
        return f"TLS failed: {failure.reason or type(failure).__name__}", False
    # Every smtplib error is an OSError too: the protocol's own come first.
    if isinstance(failure, smtplib.SMTPException) and not isinstance(
        failure, smtplib.SMTPServerDisconnected
    ):
        return f"SMTP failed: {_text(str(failure))}", False
    return f"cannot reach the SMTP server ({type(failure).__name__})", True


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return "refused " + ", ".join(
        f"{address} (SMTP {code} {_text(reply)})"
        for address, (code, reply) in refused.items()
    )


def _text(reply: bytes | str) -> str:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:200]


def _delivery(
    target: str,
    status: Literal["delivered", "failed"],
    attempts: int,
    error: str | None,
) -> Delivery:
    return Delivery(
        type="email",
        target=target,
        status=status,
        attempts=attempts,
        error=error,
        at=timestamp(datetime.now(UTC)),
    )
