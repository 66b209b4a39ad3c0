"""A real SMTP server on loopback (aiosmtpd) that keeps every message it accepts.

It can speak plain SMTP, STARTTLS or SMTPS with a self-signed certificate made
for the test, require a login, and answer scripted refusals before accepting.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class Inbox:
    """The aiosmtpd handler: keeps messages, or answers the next scripted reply."""

    received: list[Received] = field(default_factory=list)
    # Replies such as "451 4.3.0 try later" given to DATA before accepting.
    refusals: list[str] = field(default_factory=list)
    # Recipients refused at RCPT with this reply.
    refused_recipients: dict[str, str] = field(default_factory=dict)
    data_attempts: int = 0

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's name)
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refused_recipients:
            return self.refused_recipients[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's name)
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        self.data_attempts += 1
        if self.refusals:
            return self.refusals.pop(0)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), message)
        )
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    inbox: Inbox
    host: str
    port: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / "smtp-cert.pem"
    key_file = directory / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def _authenticator(username: str, password: str) -> Any:
    def check(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        good = (
            isinstance(data, LoginPassword)
            and data.login.decode() == username
            and data.password.decode() == password
        )
        return AuthResult(success=good, handled=False)

    return check


@contextmanager
def serving_smtp(
    *,
    security: Literal["none", "starttls", "ssl"] = "none",
    tls_context: ssl.SSLContext | None = None,
    login: tuple[str, str] | None = None,
    inbox: Inbox | None = None,
) -> Iterator[SmtpServer]:
    """Serve an SMTP server on a free loopback port until the block ends."""
    state = inbox or Inbox()
    options: dict[str, Any] = {}
    if security == "starttls":
        options.update(tls_context=tls_context, require_starttls=True)
    elif security == "ssl":
        options.update(ssl_context=tls_context)
    if login:
        options.update(authenticator=_authenticator(*login), auth_required=True)

    controller = Controller(state, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    try:
        yield SmtpServer(inbox=state, host="127.0.0.1", port=controller.port)
    finally:
        controller.stop()
