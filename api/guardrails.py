"""The guardrail fields of an automation: request and response parts, and their
translation to the flow's one `guardrails` parameter.

The fields are mixed into the automation's request and response bodies; on update
each may be sent as null to remove that limit.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from flows.guardrails import Guardrails

MAX_TOKENS_LIMIT = 100_000_000
MAX_COST_LIMIT_USD = 100_000.0

# Strict: `"1000"`, `1000.5` or `true` is a mistake, not a number to coerce.
TokenCap = Annotated[int, Field(strict=True, ge=1, le=MAX_TOKENS_LIMIT)]
DollarCap = Annotated[
    float, Field(strict=True, gt=0, le=MAX_COST_LIMIT_USD, allow_inf_nan=False)
]


class GuardrailsIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=False
    )

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


GUARDRAIL_FIELDS = tuple(GuardrailsIn.model_fields)
GUARDRAIL_ALIASES = frozenset(to_camel(name) for name in GUARDRAIL_FIELDS)


class GuardrailsOut(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    max_tokens: int | None = None
    max_cost_usd: float | None = None


def stored_guardrails(
    body: GuardrailsIn, current: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The `guardrails` parameter after `body`: fields sent replace (null removes),
    fields left out keep their stored value."""
    merged = dict(current or {})
    for name in body.model_fields_set & set(GUARDRAIL_FIELDS):
        merged[name] = getattr(body, name)
    return Guardrails.model_validate(merged).model_dump(exclude_none=True)


def guardrails_changed(body: GuardrailsIn) -> bool:
    return bool(body.model_fields_set & set(GUARDRAIL_FIELDS))


def guardrails_out(parameters: dict[str, Any]) -> dict[str, Any]:
    """The response fields of the stored parameter, by field name."""
    stored = Guardrails.model_validate(parameters.get("guardrails") or {})
    return {
        "max_tokens": stored.max_tokens,
        "max_cost_usd": stored.max_cost_usd,
    }
