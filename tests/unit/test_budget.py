"""Monthly budgets without a Prefect server: months in a timezone, spend that
resets when the month turns, which budget is spent, the one warning at 80 percent,
and the 402 answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from api.budgets import set_org_budget
from api.errors import BudgetExhaustedError
from api.schemas import AutomationCreate
from flows.budget import _crossed, _warning, as_budget, budgets_of, month_of
from tests.unit.test_errors import VALID_BODY

NEW_YEAR_UTC = datetime(2027, 1, 1, 3, 0, tzinfo=UTC)


def budgets(**overrides: Any) -> Any:
    values: dict[str, Any] = {
        "stats": {"monthSpend": {"month": "2027-01", "usd": 4.0}},
        "budget": 10.0,
        "zone": "UTC",
        "organization": "acme",
        "org_budget": 100,
        "org_spend": {"month": "2027-01", "usd": 40.0},
        "now": NEW_YEAR_UTC,
        **overrides,
    }
    return budgets_of(**values)


class TestMonths:
    def test_the_month_is_the_automations_local_one(self) -> None:
        # 03:00Z on New Year's Day is still December in Los Angeles.
        assert month_of(NEW_YEAR_UTC, "America/Los_Angeles") == "2026-12"
        assert month_of(NEW_YEAR_UTC, "Asia/Tokyo") == "2027-01"

    def test_spend_of_an_earlier_month_counts_as_nothing(self) -> None:
        spent = budgets(zone="America/Los_Angeles")

        assert (spent.month, spent.spent) == ("2026-12", 0.0)
        assert (spent.org_month, spent.org_spent) == ("2027-01", 40.0)

    @pytest.mark.parametrize("value", [None, True, 0, -5, "100", {"usd": 1}])
    def test_an_organization_budget_that_is_not_a_positive_number_is_none(
        self, value: Any
    ) -> None:
        assert as_budget(value) is None


class TestExhausted:
    def test_below_both_budgets_nothing_is_spent(self) -> None:
        assert budgets().exhausted() is None

    def test_the_automations_budget_reached_names_it(self) -> None:
        spent = budgets(stats={"monthSpend": {"month": "2027-01", "usd": 10.0}})

        assert spent.exhausted() == (
            "monthlyBudgetUsd 10 reached (10 spent in 2027-01)"
        )

    def test_the_organizations_budget_reached_names_it(self) -> None:
        spent = budgets(budget=None, org_spend={"month": "2027-01", "usd": 100.5})

        assert spent.exhausted() == (
            "the organization's monthly budget of 100 USD reached"
            " (100.5 spent in 2027-01)"
        )

    def test_a_raised_budget_is_not_spent_any_more(self) -> None:
        stats = {"monthSpend": {"month": "2027-01", "usd": 10.0}}

        assert budgets(stats=stats, budget=25.0).exhausted() is None


class TestWarning:
    def test_warned_once_at_80_percent_per_month_and_budget(self) -> None:
        warned = {"month": "2027-01", "budget": 10.0}

        assert _crossed(10.0, 7.99, "2027-01", None) is False
        assert _crossed(10.0, 8.0, "2027-01", None) is True
        assert _crossed(10.0, 9.5, "2027-01", warned) is False
        assert _crossed(20.0, 16.0, "2027-01", warned) is True
        assert _crossed(10.0, 8.0, "2027-02", warned) is True
        assert _crossed(None, 1e9, "2027-01", None) is False

    def test_the_warning_says_how_much_of_which_budget(self) -> None:
        notice = _warning("Docs digest", 8.1, 10.0, "2027-01")

        assert notice.event == "budget_warning"
        assert notice.subject == "Docs digest: 81% of the monthly budget spent"
        assert notice.text.startswith(
            "**Docs digest** has spent 8.10 USD of its monthly budget of 10 USD in"
            " 2027-01 (81%)."
        )


class TestApi:
    def test_a_spent_budget_answers_402_in_the_contracts_shape(self) -> None:
        error = BudgetExhaustedError("spent", param="monthlyBudgetUsd")

        assert error.status == 402
        assert error.body() == {
            "error": {
                "type": "budget_error",
                "code": "monthly_budget_exceeded",
                "message": "spent",
                "param": "monthlyBudgetUsd",
            }
        }

    @pytest.mark.parametrize("value", [0, -1, "5", True, 1e12])
    def test_a_budget_that_is_not_a_positive_amount_is_refused(
        self, value: Any
    ) -> None:
        with pytest.raises(ValueError, match="monthlyBudgetUsd"):
            AutomationCreate.model_validate({**VALID_BODY, "monthlyBudgetUsd": value})


class TestBudgetCommand:
    @pytest.mark.parametrize(
        ("organization", "usd", "problem"),
        [
            ("Acme!", 10.0, "organization"),
            ("acme", 0.0, "above 0"),
            ("acme", float("nan"), "above 0"),
            ("acme", float("inf"), "above 0"),
        ],
    )
    async def test_a_bad_organization_or_amount_is_refused_before_prefect(
        self, organization: str, usd: float, problem: str
    ) -> None:
        with pytest.raises(ValueError, match=problem):
            await set_org_budget(cast(Any, None), organization, usd)
