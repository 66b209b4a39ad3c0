"""Where Slack and email channels send from: one Slack app and one SMTP server.

Runs load the block document named `default` of each type; an operator creates
them in the Prefect UI or in Python (see the README). Tokens and passwords are
`SecretStr`: Prefect keeps them obfuscated and they never appear in a repr or a
log line.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from typing import ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator
from slack_sdk import WebClient

CHANNEL_BLOCK_DOCUMENT_NAME = "default"
SMTP_DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}

_ADDRESS = re.compile(r"^[^@\s<>,;\"]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class WorkjetSlackCredentials(Block):
    """The Slack app that automations post as, and the Web API it talks to."""

    _block_type_name: ClassVar[str] = "Workjet Slack Credentials"
    _block_type_slug: ClassVar[str] = "workjet-slack-credentials"
    _description: ClassVar[str] = (
        "The bot token of the Slack app that Slack channels post with. Runs use the"
        " document named 'default'."
    )

    token: SecretStr = Field(
        description="Bot user OAuth token (xoxb-...) with the chat:write scope."
    )
    base_url: str = Field(
        default="https://slack.com/api/",
        description="Slack Web API address; change it only for a proxy or a test.",
    )
    timeout_seconds: int = Field(
        default=30, gt=0, description="How long one API call may take."
    )

    @field_validator("base_url")
    @classmethod
    def _http_base_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/?#]+(/\S*)?$", value):
            raise ValueError(f"'{value}' is not an http(s) URL")
        return value if value.endswith("/") else value + "/"

    def get_client(self) -> WebClient:
        """A Web API client for this app."""
        # No retry handlers: the delivery retries itself, so that it can count
        # attempts and bound the wait Slack asks for.
        return WebClient(
            token=self.token.get_secret_value(),
            base_url=self.base_url,
            timeout=self.timeout_seconds,
            retry_handlers=[],
        )


class WorkjetSmtpServer(Block):
    """The SMTP server that email channels send through, and the sender address."""

    _block_type_name: ClassVar[str] = "Workjet SMTP Server"
    _block_type_slug: ClassVar[str] = "workjet-smtp-server"
    _description: ClassVar[str] = (
        "The SMTP server, login and sender address of email channels. Runs use the"
        " document named 'default'."
    )

    host: str = Field(description="Host name or address of the SMTP server.")
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port; empty means 465 for ssl, 587 for starttls, 25 for none.",
    )
    security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls",
        description=(
            "starttls: plain connection upgraded with STARTTLS; ssl: TLS from the"
            " first byte (SMTPS); none: no encryption, for a relay on a trusted"
            " network only."
        ),
    )
    verify_tls: bool = Field(
        default=True, description="Check the server's certificate and host name."
    )
    username: str | None = Field(
        default=None, description="Login name; empty for a server without login."
    )
    password: SecretStr | None = Field(default=None, description="Login password.")
    from_address: str = Field(description="The sender address of every message.")
    timeout_seconds: float = Field(
        default=30, gt=0, description="How long connecting and each command may take."
    )

    @field_validator("from_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _ADDRESS.match(value):
            raise ValueError(f"'{value}' is not an email address")
        return value

    @property
    def effective_port(self) -> int:
        return self.port or SMTP_DEFAULT_PORTS[self.security]

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def get_client(self) -> smtplib.SMTP:
        """A connected SMTP client, encrypted and logged in as configured.

        The caller closes it (`with block.get_client() as smtp: ...`).
        """
        smtp: smtplib.SMTP
        if self.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                self.host,
                self.effective_port,
                timeout=self.timeout_seconds,
                context=self.tls_context(),
            )
        else:
            smtp = smtplib.SMTP(
                self.host, self.effective_port, timeout=self.timeout_seconds
            )

        try:
            if self.security == "starttls":
                smtp.starttls(context=self.tls_context())
            if self.username:
                password = self.password.get_secret_value() if self.password else ""
                smtp.login(self.username, password)
        except BaseException:
            smtp.close()
            raise
        return smtp
