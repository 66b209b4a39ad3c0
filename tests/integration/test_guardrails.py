"""Guardrails through the whole stack: per-run caps stop a run on the worker and
its record keeps what it produced; failed runs alert the channels, pause the
automation after too many in a row, and a recovery is announced once; monthly
budgets warn once at 80 percent, skip scheduled runs and refuse manual ones;
missed scheduled runs follow their catch-up mode, and backfill makes past runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from blocks.catalog import TokenUsage, WorkjetModelCatalog
from flows.ids import flow_run_id_of
from tests.integration.conftest import (
    LiveStack,
    Receiver,
    directive,
    schedule_run,
    start_run,
)

pytestmark = pytest.mark.integration

FIXTURE_SERVER = (
    Path(__file__).resolve().parents[1] / "connectors" / "mcp_fixture_server.py"
)


@pytest.fixture(scope="module")
def echo_connector(live: LiveStack) -> Iterator[str]:
    """Our fixture MCP server as the connector `echo`, saved as an operator would."""
    fields = {
        "command": sys.executable,
        "args": [str(FIXTURE_SERVER), "stdio", os.devnull],
    }
    live.run_python(
        "import asyncio, json, sys\nfrom blocks import WorkjetMcpConnector\n"
        "connector = WorkjetMcpConnector(**json.loads(sys.argv[1]))\n"
        "asyncio.run(connector.asave('echo', overwrite=True))\n",
        json.dumps(fields),
    )
    yield "echo"
    live.run_python(
        "import asyncio\nfrom blocks import WorkjetMcpConnector\n"
        "asyncio.run(WorkjetMcpConnector.adelete('echo'))\n"
    )


class TestRunCaps:
    def test_a_run_past_max_tokens_fails_and_keeps_output_tokens_and_cost(
        self,
        live: LiveStack,
        make_automation: Callable[..., dict[str, Any]],
        echo_connector: str,
        receiver: str,
    ) -> None:
        prompt = (
            "Check the echo. "
            + directive(tool="echo__echo", args=json.dumps({"text": "kept-heron"}))
            + directive(input_tokens=100, output_tokens=300)
        )
        automation = make_automation(
            systemPrompt=prompt,
            tools=[echo_connector],
            maxTokens=700,
            channels=[{"type": "webhook", "url": receiver}],
        )
        assert automation["maxTokens"] == 700
        assert automation["maxCostUsd"] is None

        run = live.wait_for_run(automation["id"], start_run(live, automation))

        # 400 tokens after the tool turn, 800 after the answer: past the cap.
        assert run["status"] == "failure"
        assert run["error"] == "budget_exceeded: maxTokens 700 reached (800 used)"
        assert "echo: kept-heron" in run["output"]
        assert (run["tokensInput"], run["tokensOutput"]) == (200, 600)
        assert [call["tool"] for call in run["toolCalls"]] == ["echo"]
        answered_by = run["model"]
        expected = WorkjetModelCatalog().estimate_cost(
            answered_by, TokenUsage(input=200, output=600)
        )
        assert run["estimatedCost"] == pytest.approx(expected)
        assert expected > 0
        assert [d["status"] for d in run["deliveries"]] == ["skipped"]
        assert run["deliveries"][0]["error"] == f"not sent: {run['error']}"

        read = live.api.get(f"/automations/{automation['id']}").json()
        assert read["runs"]["estimatedCost"] == pytest.approx(expected)
        assert read["runs"]["tokensOutput"] == 600

    def test_caps_change_and_clear_through_put(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(maxTokens=5000, maxCostUsd=0.25)
        path = f"/automations/{automation['id']}"

        changed = live.api.put(path, json={"maxCostUsd": 1.5})
        cleared = live.api.put(path, json={"maxTokens": None})

        assert changed.status_code == 200, changed.text
        assert (changed.json()["maxTokens"], changed.json()["maxCostUsd"]) == (
            5000,
            1.5,
        )
        assert (cleared.json()["maxTokens"], cleared.json()["maxCostUsd"]) == (
            None,
            1.5,
        )
        listed = live.api.get("/automations").json()["automations"]
        mine = next(item for item in listed if item["id"] == automation["id"])
        assert mine["maxCostUsd"] == 1.5


def received_bodies() -> list[dict[str, Any]]:
    return [json.loads(item.body) for item in Receiver.received]


def events() -> list[str | None]:
    return [body.get("event") for body in received_bodies()]


class TestFailureAlertsAndAutoPause:
    def test_alerts_after_n_failures_pause_with_reason_and_one_recovery(
        self,
        live: LiveStack,
        make_automation: Callable[..., dict[str, Any]],
        receiver: str,
    ) -> None:
        automation = make_automation(
            systemPrompt="Summarise. " + directive(error=400),
            notify={"afterConsecutiveFailures": 2, "onRecovery": True},
            pauseAfterConsecutiveFailures=3,
            channels=[{"type": "webhook", "url": receiver}],
        )
        assert automation["notify"] == {
            "onFailure": "final",
            "afterConsecutiveFailures": 2,
            "onRecovery": True,
        }
        path = f"/automations/{automation['id']}"

        def run_once() -> dict[str, Any]:
            return live.wait_for_run(automation["id"], start_run(live, automation))

        first = run_once()
        assert first["status"] == "failure"
        assert events() == []

        second = run_once()
        assert events() == ["failure"]
        alert = received_bodies()[0]
        assert alert["run"]["id"] == second["id"]
        assert alert["run"]["status"] == "failure"
        assert second["error"] in alert["message"]
        assert "(2 in a row)" in alert["message"]
        flow_run_uuid = str(flow_run_id_of(second["id"]))
        assert f"/runs/flow-run/{flow_run_uuid}" in alert["message"]
        assert live.api.get(path).json()["status"] == "active"

        run_once()
        paused = live.api.get(path).json()
        assert paused["status"] == "paused"
        assert paused["pausedReason"].startswith(
            "paused after 3 consecutive failed runs; last error: model "
        )
        assert events() == ["failure", "failure"]
        assert "The automation is now paused" in received_bodies()[1]["message"]

        live.api.put(path, json={"systemPrompt": "Summarise. " + directive()})
        activated = live.api.post(f"{path}/activate")
        assert activated.status_code == 200
        assert live.api.get(path).json()["pausedReason"] is None

        assert run_once()["status"] == "success"
        assert run_once()["status"] == "success"
        # Each success is delivered; only the first after the alerts says so.
        assert events() == ["failure", "failure", None, "recovery", None]
        recovery = received_bodies()[3]
        assert recovery["message"].startswith(f"**{automation['name']}** succeeds")

    def test_a_model_call_that_succeeds_on_retry_does_not_alert(
        self,
        live: LiveStack,
        make_automation: Callable[..., dict[str, Any]],
        receiver: str,
    ) -> None:
        automation = make_automation(
            systemPrompt="Summarise. " + directive(error=529, times=2, retry_after=0.1),
            notify={"onFailure": "final"},
            channels=[{"type": "webhook", "url": receiver}],
        )

        run = live.wait_for_run(automation["id"], start_run(live, automation))

        assert run["status"] == "success"
        assert events() == [None]

    def test_a_manual_pause_keeps_its_reason_until_activated(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation()
        path = f"/automations/{automation['id']}"

        live.api.post(f"{path}/pause", json={"reason": "Quota review"})
        with_reason = live.api.get(path).json()
        live.api.post(f"{path}/pause")
        without_reason = live.api.get(path).json()
        live.api.post(f"{path}/pause", json={"reason": "Again"})
        live.api.post(f"{path}/activate")
        activated = live.api.get(path).json()

        assert (with_reason["status"], with_reason["pausedReason"]) == (
            "paused",
            "Quota review",
        )
        assert without_reason["pausedReason"] is None
        assert (activated["status"], activated["pausedReason"]) == ("active", None)


def run_cost(tokens: int) -> float:
    """What one run with `tokens` input and output tokens costs on the stand-in."""
    catalog = WorkjetModelCatalog()
    model = catalog.candidates("standard")[0]
    return catalog.estimate_cost(model, TokenUsage(input=tokens, output=tokens))


class TestMonthlyBudgets:
    def test_warning_once_at_80_percent_skip_and_402_at_100_until_raised(
        self,
        live: LiveStack,
        make_automation: Callable[..., dict[str, Any]],
        receiver: str,
    ) -> None:
        cost = run_cost(1000)
        budget = round(cost * 1.2, 6)
        automation = make_automation(
            systemPrompt="Summarise. "
            + directive(input_tokens=1000, output_tokens=1000),
            monthlyBudgetUsd=budget,
            channels=[{"type": "webhook", "url": receiver}],
        )
        path = f"/automations/{automation['id']}"

        first = live.wait_for_run(automation["id"], start_run(live, automation))
        assert first["estimatedCost"] == pytest.approx(cost)
        # 83 percent spent: the run is delivered, then the warning.
        assert events() == [None, "budget_warning"]
        warning = received_bodies()[1]
        assert f"monthly budget of {budget:g} USD" in warning["message"]
        assert "(83%)" in warning["message"]

        live.wait_for_run(automation["id"], start_run(live, automation))
        assert events() == [None, "budget_warning", None]

        refused = live.api.post(f"{path}/run")
        assert refused.status_code == 402, refused.text
        error = refused.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "budget_error",
            "monthly_budget_exceeded",
            "monthlyBudgetUsd",
        )
        assert f"monthlyBudgetUsd {budget:g} reached" in error["message"]

        skipped = live.wait_for_run(automation["id"], schedule_run(live, automation))
        assert (skipped["status"], skipped["trigger"]) == ("failure", "schedule")
        assert skipped["error"].startswith(f"skipped: monthlyBudgetUsd {budget:g}")
        assert (skipped["tokensInput"], skipped["estimatedCost"]) == (0, 0.0)
        assert events() == [None, "budget_warning", None]

        read = live.api.get(path).json()
        spend = read["spendThisMonth"]
        assert spend["usd"] == pytest.approx(2 * cost)
        assert spend["monthlyBudgetUsd"] == budget == read["monthlyBudgetUsd"]
        assert len(spend["month"]) == len("2026-12")

        live.api.put(path, json={"monthlyBudgetUsd": 1.0})
        assert live.api.post(f"{path}/run").status_code == 202

    def test_an_organization_budget_set_by_the_cli_warns_and_refuses(
        self,
        live: LiveStack,
        receiver: str,
    ) -> None:
        cost = run_cost(1000)
        budget = round(cost * 1.2, 6)
        key = live.stack.create_key("budget-org")
        client = httpx.Client(
            base_url=live.stack.config.api_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        shown = budget_cli(live, "set", "--org", "budget-org", "--monthly-usd", budget)
        assert shown.startswith(f"budget-org: {budget:g} USD; 0.00 USD spent in ")

        made = client.post(
            "/automations",
            json={
                "name": "Budgeted",
                "systemPrompt": "Summarise. "
                + directive(input_tokens=1000, output_tokens=1000),
                "schedule": "0 8 * * 1-5",
                "channels": [{"type": "webhook", "url": receiver}],
            },
        ).json()
        try:
            for _ in range(2):
                run_id = client.post(f"/automations/{made['id']}/run").json()["runId"]
                wait_for(client, made["id"], run_id)

            assert events() == [None, "budget_warning", None]
            assert "The organization budget-org" in received_bodies()[1]["message"]
            refused = client.post(f"/automations/{made['id']}/run")
            assert refused.status_code == 402
            assert refused.json()["error"]["param"] is None
            assert "organization's monthly budget" in refused.json()["error"]["message"]
            spend = client.get(f"/automations/{made['id']}").json()["spendThisMonth"]
            assert spend["organizationUsd"] == pytest.approx(2 * cost)
            assert spend["organizationMonthlyBudgetUsd"] == budget

            budget_cli(live, "clear", "--org", "budget-org")
            assert client.post(f"/automations/{made['id']}/run").status_code == 202
        finally:
            client.delete(f"/automations/{made['id']}")
            budget_cli(live, "clear", "--org", "budget-org")


def budget_cli(live: LiveStack, *args: str | float) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "budget", *map(str, args)],
        cwd=live.stack.config.project_dir,
        env=live.environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def wait_for(client: httpx.Client, automation_id: str, run_id: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = client.get(f"/automations/{automation_id}/runs/{run_id}").json()
        if run.get("status") not in (None, "running"):
            return
        time.sleep(1)
    raise AssertionError(f"{run_id} did not finish")


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def missed_run(live: LiveStack, automation: dict[str, Any], fired: datetime) -> str:
    """A run as Prefect's scheduler leaves it when no worker took it: scheduled at
    its fire time, tagged `auto-scheduled`, due long ago."""
    deployment = flow_run_id_of("run_" + automation["id"].removeprefix("auto_"))
    state = {
        "type": "SCHEDULED",
        "state_details": {"scheduled_time": fired.isoformat()},
    }
    response = live.prefect_post(
        f"/deployments/{deployment}/create_flow_run",
        {"state": state, "tags": ["auto-scheduled"]},
    )
    assert response.status_code == 201, response.text
    return "run_" + response.json()["id"].replace("-", "")


class TestCatchUpAndBackfill:
    def test_each_catch_up_mode_on_three_missed_fire_times(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        # Ten minutes past its most recent fire time, and fifty before the next:
        # the most recent missed run is due and no later one has passed.
        now = datetime.now(UTC)
        minute = (now.minute - 10) % 60
        latest = now.replace(minute=minute, second=0, microsecond=0)
        if latest > now:
            latest -= timedelta(hours=1)
        fired = [latest - timedelta(hours=hours) for hours in (2, 1, 0)]
        automations = {
            mode: make_automation(
                schedule=f"{minute} * * * *",
                timezone="UTC",
                systemPrompt="Summarise. " + directive(),
                catchUp=mode,
            )
            for mode in ("latest", "all", "none")
        }
        assert automations["latest"]["catchUp"] == "latest"

        started = {
            mode: [missed_run(live, automation, moment) for moment in fired]
            for mode, automation in automations.items()
        }
        outcome = {
            mode: [
                live.wait_for_run(automations[mode]["id"], run_id, timeout=240)
                for run_id in run_ids
            ]
            for mode, run_ids in started.items()
        }

        def errors(mode: str) -> list[str | None]:
            return [run["error"] for run in outcome[mode]]

        later = "skipped: missed its fire time; a later one has passed (catchUp latest)"
        assert errors("latest") == [later, later, None]
        assert errors("all") == [None, None, None]
        assert errors("none") == ["skipped: missed its fire time (catchUp none)"] * 3
        assert all(
            run["trigger"] == "schedule" for runs in outcome.values() for run in runs
        )
        assert [run["status"] for run in outcome["latest"]] == [
            "failure",
            "failure",
            "success",
        ]
        assert outcome["none"][0]["tokensInput"] == 0

    def test_backfill_creates_exactly_the_fire_times_in_its_range_once(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(
            schedule="0 * * * *",
            timezone="UTC",
            systemPrompt="Summarise. " + directive(),
        )
        path = f"/automations/{automation['id']}/backfill"
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        body = {
            "from": rfc3339(hour - timedelta(hours=4, minutes=30)),
            "to": rfc3339(hour - timedelta(hours=1)),
        }

        made = live.api.post(path, json=body)
        again = live.api.post(path, json=body)
        too_many = live.api.post(
            path, json={**body, "from": rfc3339(hour - timedelta(days=5))}
        )

        assert made.status_code == 202, made.text
        expected = [rfc3339(hour - timedelta(hours=hours)) for hours in (4, 3, 2)]
        assert [run["firesAt"] for run in made.json()["runs"]] == expected
        assert made.json()["existing"] == 0
        assert (again.json()["runs"], again.json()["existing"]) == ([], 3)
        assert too_many.status_code == 422
        assert too_many.json()["error"]["param"] == "to"
        # Hours late, yet run: catch-up never skips what a backfill asked for.
        for run in made.json()["runs"]:
            finished = live.wait_for_run(automation["id"], run["runId"], timeout=240)
            assert (finished["status"], finished["trigger"]) == ("success", "schedule")
