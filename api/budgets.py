"""An organization's monthly budget, as `workjet budget` sets and shows it.

The budget is the Prefect variable `workjet_org_budget_<organization>` (a number of
US dollars), so it can also be changed in the Prefect UI; runs add their cost to
`workjet_org_spend_<organization>`.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectNotFound

from blocks.keys import ORGANIZATION_PATTERN
from flows.budget import (
    as_budget,
    month_of,
    org_budget_variable,
    org_spend_variable,
    spent_in,
)

logger = logging.getLogger(__name__)
MAX_ORG_BUDGET_USD = 10_000_000.0


def _checked(organization: str) -> str:
    if not ORGANIZATION_PATTERN.match(organization):
        raise ValueError(
            "organization: use lower-case letters, digits and dashes (at most 63)"
        )
    return organization


async def set_org_budget(client: PrefectClient, organization: str, usd: float) -> None:
    name = org_budget_variable(_checked(organization))
    if not 0 < usd <= MAX_ORG_BUDGET_USD:
        raise ValueError(
            f"the budget must be above 0 and at most {MAX_ORG_BUDGET_USD:g}"
        )

    if await client.read_variable_by_name(name) is None:
        await client.create_variable(VariableCreate(name=name, value=usd))
    else:
        await client.update_variable(VariableUpdate(name=name, value=usd))
    logger.info("organization budget set organization=%s usd=%g", organization, usd)


async def clear_org_budget(client: PrefectClient, organization: str) -> None:
    with contextlib.suppress(ObjectNotFound):
        await client.delete_variable_by_name(
            org_budget_variable(_checked(organization))
        )
    logger.info("organization budget cleared organization=%s", organization)


async def read_org_budget(
    client: PrefectClient, organization: str
) -> tuple[float | None, str, float]:
    """The budget (None: none), this UTC month, and what was spent in it."""
    budget = await client.read_variable_by_name(
        org_budget_variable(_checked(organization))
    )
    spend = await client.read_variable_by_name(org_spend_variable(organization))
    month = month_of(datetime.now(UTC), "UTC")
    return (
        as_budget(budget.value if budget else None),
        month,
        spent_in(spend.value if spend else None, month),
    )
