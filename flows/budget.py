"""Monthly budgets in US dollars: an automation's, over the calendar month of its
timezone, and its organization's, over the UTC calendar month.

Spend is kept beside the other running totals: an automation's in its stats
variable (`monthSpend`), an organization's in the variable
`workjet_org_spend_<organization>`. An organization's budget is the variable
`workjet_org_budget_<organization>`, which `workjet budget set` writes. At 80
percent of a budget the channels of the run that crossed it are warned, once per
month and budget; at 100 percent scheduled runs are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from prefect.client.orchestration import get_client
from prefect.variables import Variable

from api.template import ORGANIZATION_TAG_PREFIX
from flows.agent import AgentError
from flows.alerts import SKIPPED_PREFIX
from flows.channels import StoredChannel
from flows.delivery import Notice, deliver_all, run_logger
from flows.guardrails import Guardrails
from flows.ids import stats_variable_name
from flows.triggers import trigger_of
from flows.variables import save_variable

WARN_AT = 0.8
MONTH_SPEND_KEY = "monthSpend"
WARNED_KEY = "budgetWarned"


class BudgetSkippedError(AgentError):
    """A scheduled run found a monthly budget spent and did not call the model."""


def org_budget_variable(organization: str) -> str:
    return f"workjet_org_budget_{organization}"


def org_spend_variable(organization: str) -> str:
    return f"workjet_org_spend_{organization}"


def month_of(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m")


def spent_in(entry: Any, month: str) -> float:
    """Dollars of a `{month, usd}` entry, or 0 once the month has turned."""
    if isinstance(entry, dict) and entry.get("month") == month:
        return float(entry.get("usd", 0.0))
    return 0.0


def as_budget(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


@dataclass(frozen=True)
class Budgets:
    """This month's spend beside each budget (None: no budget)."""

    month: str
    spent: float
    budget: float | None
    organization: str
    org_month: str
    org_spent: float
    org_budget: float | None

    def exhausted(self) -> str | None:
        """Which budget is spent, in words, or None."""
        if self.budget is not None and self.spent >= self.budget:
            return (
                f"monthlyBudgetUsd {self.budget:g} reached"
                f" ({self.spent:g} spent in {self.month})"
            )
        if self.org_budget is not None and self.org_spent >= self.org_budget:
            return (
                f"the organization's monthly budget of {self.org_budget:g} USD"
                f" reached ({self.org_spent:g} spent in {self.org_month})"
            )
        return None


def budgets_of(
    *,
    stats: Any,
    budget: float | None,
    zone: str,
    organization: str,
    org_budget: Any,
    org_spend: Any,
    now: datetime,
) -> Budgets:
    month = month_of(now, zone)
    org_month = month_of(now, "UTC")
    return Budgets(
        month=month,
        spent=spent_in((stats or {}).get(MONTH_SPEND_KEY), month),
        budget=budget,
        organization=organization,
        org_month=org_month,
        org_spent=spent_in(org_spend, org_month),
        org_budget=as_budget(org_budget),
    )


@dataclass(frozen=True)
class _Automation:
    zone: str
    organization: str


async def _automation(deployment_id: UUID) -> _Automation:
    async with get_client() as client:
        deployment = await client.read_deployment(deployment_id)
    zone = "UTC"
    for deployment_schedule in deployment.schedules:
        zone = str(getattr(deployment_schedule.schedule, "timezone", None) or zone)
    organization = next(
        (
            tag.removeprefix(ORGANIZATION_TAG_PREFIX)
            for tag in deployment.tags
            if tag.startswith(ORGANIZATION_TAG_PREFIX)
        ),
        "default",
    )
    return _Automation(zone=zone, organization=organization)


async def _read_budgets(deployment_id: UUID, guardrails: Guardrails | None) -> Budgets:
    automation = await _automation(deployment_id)
    organization = automation.organization
    return budgets_of(
        stats=await Variable.aget(stats_variable_name(deployment_id), default=None),  # type: ignore[func-returns-value]
        budget=guardrails.monthly_budget_usd if guardrails else None,
        zone=automation.zone,
        organization=organization,
        org_budget=await Variable.aget(org_budget_variable(organization), default=None),  # type: ignore[func-returns-value]
        org_spend=await Variable.aget(org_spend_variable(organization), default=None),  # type: ignore[func-returns-value]
        now=datetime.now(UTC),
    )


async def skip_when_spent(
    flow_run: Any, deployment_id: UUID, guardrails: Guardrails | None
) -> None:
    """Raise for a scheduled run once a budget is spent; manual runs are refused
    by the API instead, and the Prefect UI's runs count as manual."""
    if trigger_of(flow_run.tags or []) != "schedule":
        return

    try:
        problem = (await _read_budgets(deployment_id, guardrails)).exhausted()
    except Exception as error:  # noqa: BLE001
        # Budgets unknown for a moment must not stop every scheduled run.
        run_logger().warning("budget not checked error=%s", type(error).__name__)
        return
    if problem is not None:
        raise BudgetSkippedError(f"{SKIPPED_PREFIX}{problem}")


async def add_run_cost(
    guardrails: Guardrails | None,
    channels: list[StoredChannel],
    body: dict[str, Any],
    deployment_id: UUID,
) -> None:
    """Add the run's cost to this month's spend; warn at 80 percent, once."""
    cost = float(body["run"].get("estimatedCost") or 0.0)
    budgets = await _read_budgets(deployment_id, guardrails)
    notices: list[Notice] = []

    name = stats_variable_name(deployment_id)
    current: Any = await Variable.aget(name, default=None)  # type: ignore[func-returns-value]
    stats: dict[str, Any] = dict(current) if isinstance(current, dict) else {}
    spent = round(budgets.spent + cost, 6)
    stats[MONTH_SPEND_KEY] = {"month": budgets.month, "usd": spent}
    if _crossed(budgets.budget, spent, budgets.month, stats.get(WARNED_KEY)):
        stats[WARNED_KEY] = {"month": budgets.month, "budget": budgets.budget}
        notices.append(
            _warning(body["automationName"], spent, budgets.budget, budgets.month)
        )
    await save_variable(name, stats)

    org_name = org_spend_variable(budgets.organization)
    previous: Any = await Variable.aget(org_name, default=None)  # type: ignore[func-returns-value]
    org: dict[str, Any] = dict(previous) if isinstance(previous, dict) else {}
    org_spent = round(budgets.org_spent + cost, 6)
    org.update(month=budgets.org_month, usd=org_spent)
    if _crossed(budgets.org_budget, org_spent, budgets.org_month, org.get("warned")):
        org["warned"] = {"month": budgets.org_month, "budget": budgets.org_budget}
        notices.append(
            _warning(
                f"The organization {budgets.organization}",
                org_spent,
                budgets.org_budget,
                budgets.org_month,
            )
        )
    await save_variable(org_name, org)

    for notice in notices:
        run_logger().info("budget warning sent automation=%s", body["automationId"])
        if channels:
            await deliver_all(channels, body, notice)


def _crossed(budget: float | None, spent: float, month: str, warned: Any) -> bool:
    """At 80 percent or more, and not yet warned this month at this budget."""
    if budget is None or spent < WARN_AT * budget:
        return False
    return warned != {"month": month, "budget": budget}


def _warning(who: str, spent: float, budget: float | None, month: str) -> Notice:
    assert budget is not None
    share = round(100 * spent / budget)
    return Notice(
        event="budget_warning",
        subject=f"{who}: {share}% of the monthly budget spent",
        text=f"**{who}** has spent {spent:.2f} USD of its monthly budget of"
        f" {budget:g} USD in {month} ({share}%). At 100% scheduled runs are skipped"
        " until the month turns or the budget is raised.",
    )
