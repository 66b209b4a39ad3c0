"""The guardrail fields of an automation: request and response parts, and their
translation to the flow's one `guardrails` parameter.

The fields are mixed into the automation's request and response bodies; on update
each may be sent as null to remove that limit.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)
from pydantic.alias_generators import to_camel

from flows.alerts import PAUSED_REASON_KEY
from flows.budget import Budgets
from flows.guardrails import CatchUp, Guardrails

MAX_TOKENS_LIMIT = 100_000_000
MAX_COST_LIMIT_USD = 100_000.0
MAX_FAILURE_STREAK = 1_000
PAUSED_REASON_MAX_CHARS = 500

# Strict: `"1000"`, `1000.5` or `true` is a mistake, not a number to coerce.
TokenCap = Annotated[int, Field(strict=True, ge=1, le=MAX_TOKENS_LIMIT)]
DollarCap = Annotated[
    float, Field(strict=True, gt=0, le=MAX_COST_LIMIT_USD, allow_inf_nan=False)
]
RunCount = Annotated[int, Field(strict=True, ge=1, le=MAX_FAILURE_STREAK)]


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=False
    )


class NotifyIn(_Strict):
    on_failure: Literal["final", "never"] = Field(
        default="final",
        description="'final': alert when a run ends failed (retries inside a run"
        " never alert); 'never': no alerts.",
    )
    after_consecutive_failures: RunCount = Field(
        default=1, description="Alert once this many runs in a row have failed."
    )
    on_recovery: StrictBool = Field(
        default=False,
        description="Send one message when a run succeeds after a failure alert.",
    )


class PauseIn(_Strict):
    reason: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=PAUSED_REASON_MAX_CHARS
        ),
    ]

    @field_validator("reason")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise ValueError("must be one line of text without control characters")
        return value


class GuardrailsIn(_Strict):
    max_tokens: TokenCap | None = Field(
        default=None,
        description="Tokens one run may use, input (with cache) and output together;"
        " a run that would pass it stops with `budget_exceeded`.",
    )
    max_cost_usd: DollarCap | None = Field(
        default=None,
        description="US dollars one run may cost; a run that would pass it stops"
        " with `budget_exceeded`.",
    )
    pause_after_consecutive_failures: RunCount | None = Field(
        default=None,
        description="Pause the automation after this many failed runs in a row;"
        " `pausedReason` says why.",
    )
    notify: NotifyIn | None = Field(
        default=None, description="Failure alerts to the automation's channels."
    )
    monthly_budget_usd: DollarCap | None = Field(
        default=None,
        description="US dollars per calendar month (in the automation's timezone):"
        " a warning at 80 percent, scheduled runs skipped and manual runs refused"
        " (402) at 100.",
    )
    catch_up: CatchUp | None = Field(
        default=None,
        description="Scheduled runs missed while the worker or server was down:"
        " 'latest' (default) runs the most recent, 'all' runs each in order,"
        " 'none' skips them.",
    )


GUARDRAIL_FIELDS = tuple(GuardrailsIn.model_fields)
GUARDRAIL_ALIASES = frozenset(to_camel(name) for name in GUARDRAIL_FIELDS)


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class NotifyOut(_Out):
    on_failure: Literal["final", "never"]
    after_consecutive_failures: int
    on_recovery: bool


class SpendOut(_Out):
    month: str = Field(description="The month in the automation's timezone.")
    usd: float
    monthly_budget_usd: float | None
    organization_month: str = Field(description="The organization's month, in UTC.")
    organization_usd: float
    organization_monthly_budget_usd: float | None


class GuardrailsOut(_Out):
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    pause_after_consecutive_failures: int | None = None
    notify: NotifyOut | None = None
    paused_reason: str | None = Field(
        default=None, description="Why the automation is paused, when it is."
    )
    monthly_budget_usd: float | None = None
    catch_up: CatchUp = "latest"
    spend_this_month: SpendOut | None = Field(
        default=None, description="Only in GET /automations/:id."
    )


def stored_guardrails(
    body: GuardrailsIn, current: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The `guardrails` parameter after `body`: fields sent replace (null removes),
    fields left out keep their stored value."""
    merged = dict(current or {})
    for name in body.model_fields_set & set(GUARDRAIL_FIELDS):
        value = getattr(body, name)
        merged[name] = value.model_dump() if isinstance(value, BaseModel) else value
    return Guardrails.model_validate(merged).model_dump(exclude_none=True)


def guardrails_changed(body: GuardrailsIn) -> bool:
    return bool(body.model_fields_set & set(GUARDRAIL_FIELDS))


def guardrails_out(
    parameters: dict[str, Any], stats: dict[str, Any] | None, paused: bool
) -> dict[str, Any]:
    """The response fields, by field name, of the stored parameter and the stats
    the runs keep; a reason is shown only while the automation is paused."""
    stored = Guardrails.model_validate(parameters.get("guardrails") or {})
    reason = (stats or {}).get(PAUSED_REASON_KEY) if paused else None
    return {
        "max_tokens": stored.max_tokens,
        "max_cost_usd": stored.max_cost_usd,
        "pause_after_consecutive_failures": stored.pause_after_consecutive_failures,
        "notify": NotifyOut.model_validate(stored.notify.model_dump())
        if stored.notify
        else None,
        "paused_reason": str(reason) if reason else None,
        "monthly_budget_usd": stored.monthly_budget_usd,
        "catch_up": stored.catch_up or "latest",
    }


def spend_out(budgets: Budgets) -> SpendOut:
    return SpendOut(
        month=budgets.month,
        usd=budgets.spent,
        monthly_budget_usd=budgets.budget,
        organization_month=budgets.org_month,
        organization_usd=budgets.org_spent,
        organization_monthly_budget_usd=budgets.org_budget,
    )
