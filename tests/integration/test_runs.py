"""Runs end to end: a real process worker runs the flow, the stand-in model
answers through the real `anthropic` SDK, and the history comes back from Prefect."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from blocks.catalog import TokenUsage, WorkjetModelCatalog
from flows.ids import deployment_id_of, flow_run_id_of
from flows.webhook import sign
from tests.integration.conftest import (
    LiveStack,
    Receiver,
    directive,
    start_run,
)

pytestmark = pytest.mark.integration


class TestManualRun:
    def test_run_records_tokens_cost_model_and_signed_delivery(
        self,
        live: LiveStack,
        make_automation: Callable[..., dict[str, Any]],
        receiver: str,
    ) -> None:
        prompt = "Report on the docs. " + directive(
            input_tokens=1200, output_tokens=300, cache_read=500, cache_write=100
        )
        automation = make_automation(
            systemPrompt=prompt,
            model="premium",
            channels=[{"type": "webhook", "url": receiver, "secret": "s3cret"}],
        )

        run = live.wait_for_run(automation["id"], start_run(live, automation))

        assert run["status"] == "success", run
        assert run["trigger"] == "manual"
        assert run["model"] == "claude-opus-4-5"
        assert run["tokensInput"] == 1200 + 500 + 100
        assert run["tokensOutput"] == 300
        expected = WorkjetModelCatalog().estimate_cost(
            "claude-opus-4-5",
            TokenUsage(input=1200, output=300, cache_read=500, cache_write=100),
        )
        assert run["estimatedCost"] == pytest.approx(expected)
        assert run["output"].strip()
        assert isinstance(run["duration"], int) and run["duration"] > 0
        assert run["deliveries"][0]["status"] == "delivered"

        headers, raw = Receiver.received[0].headers, Receiver.received[0].body
        assert headers["X-Workjet-Signature"] == sign("s3cret", raw)

    def test_tier_falls_back_to_the_next_model_when_one_is_overloaded(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        prompt = "Check. " + directive(overloaded="claude-opus-4-5", retry_after=0.1)
        automation = make_automation(systemPrompt=prompt, model="premium")

        run = live.wait_for_run(automation["id"], start_run(live, automation))

        assert run["status"] == "success", run
        assert run["model"] == "claude-sonnet-4-5"

    def test_model_error_makes_a_failure_that_says_why(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        prompt = "Check. " + directive(error=401)
        automation = make_automation(systemPrompt=prompt)

        run = live.wait_for_run(automation["id"], start_run(live, automation))

        assert run["status"] == "failure"
        assert "401" in run["error"]
        assert run["output"] is None

    def test_unserved_tools_and_channels_fail_the_run_by_name(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(
            channels=[{"type": "slack", "channel": "#docs-team"}]
        )

        run = live.wait_for_run(automation["id"], start_run(live, automation))

        assert run["status"] == "failure"
        assert "slack" in run["error"] and "#docs-team" in run["error"]
        assert run["output"], "the output is kept when delivery fails"
        assert run["deliveries"][0]["status"] == "failed"

    def test_run_appears_in_summary_and_status_filter(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation()
        run_id = start_run(live, automation)
        live.wait_for_run(automation["id"], run_id)

        detail = live.api.get(f"/automations/{automation['id']}").json()
        failures = live.api.get(
            f"/automations/{automation['id']}/runs?status=failure"
        ).json()

        assert detail["runs"]["total"] == 1
        assert detail["runs"]["success"] == 1
        assert detail["runs"]["lastStatus"] == "success"
        assert detail["runs"]["tokensOutput"] > 0
        assert detail["lastRunAt"] is not None
        assert failures == {"runs": [], "total": 0}

    def test_output_is_a_markdown_artifact_in_prefect(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation()
        run_id = start_run(live, automation)
        run = live.wait_for_run(automation["id"], run_id)

        artifacts = live.prefect.post(
            "/artifacts/filter",
            json={
                "artifacts": {"flow_run_id": {"any_": [str(flow_run_id_of(run_id))]}}
            },
        ).json()

        assert [a["type"] for a in artifacts] == ["markdown"]
        assert artifacts[0]["data"] == run["output"]


class TestPrefectCli:
    def test_prefect_deployment_run_appears_in_history(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation()
        held = live.prefect.get(
            f"/deployments/{deployment_id_of(automation['id'])}"
        ).json()

        live.prefect_cli("deployment", "run", f"workjet-automation/{held['name']}")

        deadline = time.monotonic() + 120
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = live.api.get(f"/automations/{automation['id']}/runs").json()["runs"]
            if runs and runs[0]["status"] != "running":
                break
            time.sleep(1)
        assert len(runs) == 1
        assert runs[0]["status"] == "success"
        assert runs[0]["trigger"] == "manual"


class TestSchedule:
    def test_every_minute_automation_runs_by_itself_on_the_minute(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(schedule="* * * * *", timezone="UTC")
        created = time.monotonic()

        scheduled: dict[str, Any] | None = None
        while time.monotonic() - created < 70 and scheduled is None:
            runs = live.api.get(f"/automations/{automation['id']}/runs").json()["runs"]
            started = [r for r in runs if r["trigger"] == "schedule"]
            scheduled = started[-1] if started else None
            time.sleep(1)

        assert scheduled is not None, "no scheduled run within 70 s of creation"
        # Prefect lets a run start up to a rounding second before its time.
        started_at = datetime.strptime(scheduled["startedAt"], "%Y-%m-%dT%H:%M:%SZ")
        seconds = started_at.replace(tzinfo=UTC).second
        assert min(seconds, 60 - seconds) <= 5, scheduled["startedAt"]
