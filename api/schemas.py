"""Request and response bodies of the v1 API, with the field names of the reference.

Requests forbid unknown fields: a misspelt field such as `schedlue` would otherwise
be dropped silently and the automation saved without the change its author meant.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    field_validator,
    model_serializer,
)
from pydantic.alias_generators import to_camel

from api.guardrails import GUARDRAIL_ALIASES, GuardrailsIn, GuardrailsOut
from api.schedules import ScheduleError, validate_cron, validate_timezone

SYSTEM_PROMPT_MAX_CHARS = 100_000
NAME_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 2_000
MAX_TOOLS = 20
MAX_CHANNELS = 10
TIMEOUT_DEFAULT_SECONDS = 900
TIMEOUT_MIN_SECONDS = 10
TIMEOUT_MAX_SECONDS = 86_400
OverlapPolicy = Literal["skip", "queue", "allow"]
_OVERLAP_DOC = (
    "Runs one at a time (skip, queue) or side by side (allow); under skip a"
    " scheduled run due while the previous one still runs is recorded as skipped."
)
_TIMEOUT_DOC = "Seconds the run's model step may take, fallbacks and tools included."

_SLACK_NAME = re.compile(r"^#[a-z0-9][a-z0-9._-]{0,79}$")
_SLACK_ID = re.compile(r"^[CGD][A-Z0-9]{8,20}$")
_EMAIL = re.compile(r"^[^@\s<>,;\"]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_TOOL_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class _Request(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=False
    )


class SlackChannelIn(_Request):
    type: Literal["slack"]
    channel: str = Field(description="A channel name such as #docs-team, or an id.")

    @field_validator("channel")
    @classmethod
    def _plausible_target(cls, value: str) -> str:
        if _SLACK_NAME.match(value) or _SLACK_ID.match(value):
            return value
        raise ValueError(
            f"'{value}' is not a Slack channel; use a name such as '#docs-team'"
            " (lower case) or a channel id such as 'C0123456789'"
        )


class EmailChannelIn(_Request):
    type: Literal["email"]
    to: list[str] = Field(min_length=1, max_length=50)
    subject: Annotated[str, StringConstraints(max_length=200)] | None = None

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _EMAIL.match(address):
                raise ValueError(f"'{address}' is not an email address")
        return value

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        # A line break would end the Subject header and start another one.
        if value is not None and any(ord(char) < 32 for char in value):
            raise ValueError("the subject must be one line without control characters")
        return value


class WebhookChannelIn(_Request):
    type: Literal["webhook"]
    url: Annotated[str, StringConstraints(max_length=2048)] = Field(
        json_schema_extra={
            "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]+([/?#]\S*)?$"
        }
    )
    secret: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = (
        None
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/?#]+([/?#]\S*)?$", value, re.IGNORECASE):
            raise ValueError("is not an http(s) URL")
        try:
            port = urlsplit(value).port
        except ValueError:
            port = -1
        if port is not None and not 1 <= port <= 65535:
            raise ValueError("has a port outside 1-65535")
        if "@" in urlsplit(value).netloc:
            # Credentials in a URL would be echoed and logged with it; the secret is
            # the place for them.
            raise ValueError(
                "a webhook URL must not carry a user or password; use `secret`"
            )
        return value


ChannelIn = Annotated[
    SlackChannelIn | EmailChannelIn | WebhookChannelIn, Field(discriminator="type")
]


def _text(max_length: int, min_length: int = 1) -> Any:
    return Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=min_length, max_length=max_length
        ),
    ]


class _AutomationFields(_Request):
    @field_validator("name", check_fields=False)
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("must be one line of text without control characters")
        return value

    @field_validator("description", "system_prompt", check_fields=False)
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # PostgreSQL, under Prefect, cannot store a NUL character in text.
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator("schedule", check_fields=False)
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else _schedule_value(validate_cron, value)

    @field_validator("timezone", check_fields=False)
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _schedule_value(validate_timezone, value)

    @field_validator("tools", check_fields=False)
    @classmethod
    def _tool_ids(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for tool in value:
            if not _TOOL_ID.match(tool):
                raise ValueError(
                    f"'{tool}' is not a connector id (lower case, such as 'filesystem')"
                )
        if len(set(value)) != len(value):
            raise ValueError("a connector is named more than once")
        return value


def _schedule_value(check: Any, value: str) -> str:
    try:
        return str(check(value))
    except ScheduleError as error:
        raise ValueError(str(error)) from None


class AutomationCreate(_AutomationFields, GuardrailsIn):
    name: _text(NAME_MAX_CHARS)  # type: ignore[valid-type]
    description: _text(DESCRIPTION_MAX_CHARS, 0) | None = None  # type: ignore[valid-type]
    system_prompt: _text(SYSTEM_PROMPT_MAX_CHARS)  # type: ignore[valid-type]
    model: _text(100) = "standard"  # type: ignore[valid-type]
    schedule: str
    timezone: str = "UTC"
    tools: list[str] = Field(default_factory=list, max_length=MAX_TOOLS)
    channels: list[ChannelIn] = Field(default_factory=list, max_length=MAX_CHANNELS)
    overlap_policy: OverlapPolicy = Field("skip", description=_OVERLAP_DOC)
    timeout_seconds: int = Field(
        TIMEOUT_DEFAULT_SECONDS,
        ge=TIMEOUT_MIN_SECONDS,
        le=TIMEOUT_MAX_SECONDS,
        description=_TIMEOUT_DOC,
    )


def _not_nullable(schema: dict[str, Any]) -> None:
    """Document that only `description` and guardrails may be null on update."""
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf")
        if name == "description" or name in GUARDRAIL_ALIASES or not options:
            continue
        kept = [option for option in options if option.get("type") != "null"]
        prop.pop("anyOf")
        prop.pop("default", None)
        if len(kept) == 1:
            prop.update(kept[0])
        else:
            prop["anyOf"] = kept


class AutomationUpdate(_AutomationFields, GuardrailsIn):
    """Every field optional; only the fields present change."""

    model_config = ConfigDict(json_schema_extra=_not_nullable)

    name: _text(NAME_MAX_CHARS) | None = None  # type: ignore[valid-type]
    description: _text(DESCRIPTION_MAX_CHARS, 0) | None = None  # type: ignore[valid-type]
    system_prompt: _text(SYSTEM_PROMPT_MAX_CHARS) | None = None  # type: ignore[valid-type]
    model: _text(100) | None = None  # type: ignore[valid-type]
    schedule: str | None = None
    timezone: str | None = None
    tools: list[str] | None = Field(default=None, max_length=MAX_TOOLS)
    channels: list[ChannelIn] | None = Field(default=None, max_length=MAX_CHANNELS)
    overlap_policy: OverlapPolicy | None = Field(None, description=_OVERLAP_DOC)
    timeout_seconds: int | None = Field(
        None, ge=TIMEOUT_MIN_SECONDS, le=TIMEOUT_MAX_SECONDS, description=_TIMEOUT_DOC
    )

    @field_validator(
        "name",
        "system_prompt",
        "model",
        "schedule",
        "timezone",
        "tools",
        "channels",
        "overlap_policy",
        "timeout_seconds",
        mode="before",
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null; leave the field out to keep it")
        return value


class _Response(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ChannelOut(_Response):
    """A channel as stored; a webhook's secret is never returned, only whether set."""

    type: str
    channel: str | None = None
    to: list[str] | None = None
    subject: str | None = None
    url: str | None = None
    secret_set: bool | None = None

    @model_serializer(mode="wrap")
    def _only_its_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A Slack channel has no `url`, a webhook no `to`: leave them out.
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None}


class RunSummary(_Response):
    total: int
    success: int
    failure: int
    running: int
    last_run_at: str | None
    last_status: str | None
    tokens_input: int
    tokens_output: int
    estimated_cost: float


class AutomationOut(_Response, GuardrailsOut):
    id: str
    name: str
    description: str | None
    status: Literal["active", "paused"]
    schedule: str
    timezone: str
    model: str
    system_prompt: str
    tools: list[str]
    channels: list[ChannelOut]
    overlap_policy: OverlapPolicy = "skip"
    timeout_seconds: int = TIMEOUT_DEFAULT_SECONDS
    last_run_at: str | None
    next_run_at: str | None
    created_at: str
    updated_at: str
    runs: RunSummary | None = Field(
        default=None, description="Only in GET /automations/:id."
    )

    @model_serializer(mode="wrap")
    def _summary_when_read(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if data.get("runs") is None:
            data.pop("runs", None)
        return data


class AutomationList(_Response):
    automations: list[AutomationOut]
    total: int


class ActivateOut(_Response):
    id: str
    status: Literal["active"]
    next_run_at: str | None


class PauseOut(_Response):
    id: str
    status: Literal["paused"]


class ManualRunOut(_Response):
    run_id: str
    automation_id: str
    status: Literal["running"]
    started_at: str
    replay_of: str | None = None


class LogLine(_Response):
    time: str
    level: str
    message: str


class RunLogs(_Response):
    logs: list[LogLine]
    has_more: bool


class FireTime(_Response):
    at: str = Field(description="UTC, RFC 3339.")
    local: str = Field(description="The same instant in the automation's timezone.")


class SchedulePreview(_Response):
    id: str
    schedule: str
    timezone: str
    description: str
    status: Literal["active", "paused"]
    next_runs: list[FireTime]


class TimezoneList(_Response):
    timezones: list[str]
    total: int


class DeliveryOut(_Response):
    type: str
    target: str
    status: Literal["delivered", "failed", "skipped"]
    attempts: int
    error: str | None
    at: str | None


class ToolCallOut(_Response):
    connector: str
    tool: str
    duration: int = Field(description="Milliseconds the call took.")
    failed: bool
    error: str | None = None


class RunOut(_Response):
    id: str
    automation_id: str
    status: Literal["success", "failure", "running"]
    trigger: Literal["schedule", "manual", "replay"]
    started_at: str | None
    completed_at: str | None
    duration: int | None
    tokens_input: int
    tokens_output: int
    estimated_cost: float
    output: str | None
    model: str | None
    error: str | None
    deliveries: list[DeliveryOut]
    tool_calls: list[ToolCallOut] = Field(default_factory=list)
    replay_of: str | None = None


class RunList(_Response):
    runs: list[RunOut]
    total: int


class ErrorDetail(BaseModel):
    type: str
    code: str
    message: str
    param: str | None


class ErrorBody(BaseModel):
    error: ErrorDetail
