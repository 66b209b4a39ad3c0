"""An automation's guardrails, as the flow receives them in its parameters.

They travel as one `guardrails` parameter of the deployment, so a run keeps the
limits it started with and the Prefect UI shows them beside the rest of the
configuration.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flows.agent import AgentLimits

CatchUp = Literal["latest", "all", "none"]


class NotifyPolicy(BaseModel):
    """When the automation's channels hear about failed runs."""

    model_config = ConfigDict(extra="ignore")

    on_failure: Literal["final", "never"] = Field(
        default="final",
        description="'final': alert on a run's final status; 'never': no alerts.",
    )
    after_consecutive_failures: int = Field(
        default=1, description="Alert once this many runs in a row have failed."
    )
    on_recovery: bool = Field(
        default=False, description="Say so once when a run succeeds after an alert."
    )


class Guardrails(BaseModel):
    """Limits of one automation; every field is optional and None means no limit."""

    model_config = ConfigDict(extra="ignore")

    max_tokens: int | None = Field(
        default=None, description="Tokens (input, cache and output) one run may use."
    )
    max_cost_usd: float | None = Field(
        default=None, description="US dollars one run may cost."
    )
    pause_after_consecutive_failures: int | None = Field(
        default=None, description="Pause the automation after this many failed runs."
    )
    notify: NotifyPolicy | None = Field(
        default=None, description="Failure alerts; none when unset."
    )
    monthly_budget_usd: float | None = Field(
        default=None,
        description="US dollars the automation may spend per calendar month of its"
        " timezone; scheduled runs are skipped once it is spent.",
    )
    catch_up: CatchUp | None = Field(
        default=None,
        description="Which scheduled runs missed during downtime still run:"
        " 'latest' (the default), 'all' or 'none'.",
    )


def agent_limits(guardrails: Guardrails | None) -> AgentLimits:
    """The environment's loop bounds, with the automation's caps on top."""
    limits = AgentLimits.from_environment()
    if guardrails is None:
        return limits
    return replace(
        limits,
        max_tokens=guardrails.max_tokens,
        max_cost_usd=guardrails.max_cost_usd,
    )
