"""Overlapping runs, the run's time budget, fallback on 429, delete in flight, and
bursts of requests, on the shared real stack."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from flows.ids import deployment_id_of, flow_run_id_of
from flows.outcomes import SKIPPED_ERROR
from tests.integration.conftest import (
    LiveStack,
    directive,
    schedule_run,
    start_run,
)

pytestmark = pytest.mark.integration


def wait_until_running(live: LiveStack, run_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flow_run = live.prefect.get(f"/flow_runs/{flow_run_id_of(run_id)}").json()
        if (flow_run.get("state") or {}).get("type") == "RUNNING":
            return
        time.sleep(0.5)
    raise AssertionError(f"{run_id} was not running within {timeout} s")


def started_and_completed(run: dict[str, Any]) -> tuple[str, str]:
    return run["startedAt"], run["completedAt"]


class TestOverlapPolicy:
    def test_skip_is_the_default_and_skips_a_scheduled_run_due_meanwhile(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(systemPrompt="Slow. " + directive(delay=8))
        assert automation["overlapPolicy"] == "skip"
        first = schedule_run(live, automation)
        wait_until_running(live, first)

        due_meanwhile = schedule_run(live, automation)
        asked_for = start_run(live, automation)

        skipped = live.wait_for_run(automation["id"], due_meanwhile, timeout=90)
        manual = live.wait_for_run(automation["id"], asked_for, timeout=90)
        one = live.wait_for_run(automation["id"], first)
        assert (skipped["status"], skipped["error"]) == ("failure", SKIPPED_ERROR)
        assert skipped["deliveries"] == [] and skipped["tokensInput"] == 0
        # A run somebody asked for is never skipped: it waits for the slot.
        assert (manual["status"], manual["trigger"]) == ("success", "manual")
        assert manual["startedAt"] >= one["completedAt"]
        # Nothing waits behind the skipped run: the next scheduled one runs.
        after = live.wait_for_run(automation["id"], schedule_run(live, automation))
        assert after["status"] == "success"

    def test_queue_runs_the_second_run_after_the_first(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(
            systemPrompt="Slow. " + directive(delay=6), overlapPolicy="queue"
        )
        first = start_run(live, automation)
        wait_until_running(live, first)

        second = start_run(live, automation)

        one = live.wait_for_run(automation["id"], first)
        two = live.wait_for_run(automation["id"], second, timeout=120)
        assert (one["status"], two["status"]) == ("success", "success")
        assert two["startedAt"] >= one["completedAt"]

    def test_allow_runs_both_at_once(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(
            systemPrompt="Slow. " + directive(delay=12), overlapPolicy="allow"
        )
        first = start_run(live, automation)
        wait_until_running(live, first)

        second = start_run(live, automation)
        wait_until_running(live, second)

        one = live.wait_for_run(automation["id"], first)
        two = live.wait_for_run(automation["id"], second)
        assert (one["status"], two["status"]) == ("success", "success")
        assert two["startedAt"] < one["completedAt"]

    def test_policy_changes_on_put_and_is_validated(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation()
        path = f"/automations/{automation['id']}"
        deployment = f"/deployments/{deployment_id_of(automation['id'])}"

        changed = live.api.put(path, json={"overlapPolicy": "queue"})
        refused = live.api.put(path, json={"overlapPolicy": "never"})
        limit = live.prefect.get(deployment).json()
        allowed = live.api.put(path, json={"overlapPolicy": "allow"})

        assert changed.status_code == 200
        assert changed.json()["overlapPolicy"] == "queue"
        assert limit["global_concurrency_limit"]["limit"] == 1
        assert limit["concurrency_options"]["collision_strategy"] == "ENQUEUE"
        assert refused.status_code == 422
        assert refused.json()["error"]["param"] == "overlapPolicy"
        assert live.api.get(path).json()["overlapPolicy"] == "allow"
        assert allowed.json()["overlapPolicy"] == "allow"
        assert live.prefect.get(deployment).json()["global_concurrency_limit"] is None


class TestTimeBudget:
    def test_run_past_its_timeout_fails_with_timeout(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(
            systemPrompt="Slow. " + directive(delay=60), timeoutSeconds=10
        )
        assert automation["timeoutSeconds"] == 10

        run = live.wait_for_run(automation["id"], start_run(live, automation), 90)

        assert (run["status"], run["error"]) == ("failure", "timeout")
        assert run["output"] is None
        assert 10_000 <= run["duration"] < 30_000

    def test_timeout_bounds_are_422_naming_the_field(self, live: LiveStack) -> None:
        body = {"name": "x", "systemPrompt": "y", "schedule": "0 8 * * *"}

        for value in (9, 86_401, "ten"):
            answer = live.api.post(
                "/automations", json={**body, "timeoutSeconds": value}
            )
            assert answer.status_code == 422, value
            assert answer.json()["error"]["param"] == "timeoutSeconds"

    def test_tier_falls_back_when_a_model_is_rate_limited(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        prompt = "Check. " + directive(rate_limited="claude-opus-4-5", retry_after=0.1)
        automation = make_automation(systemPrompt=prompt, model="premium")

        run = live.wait_for_run(automation["id"], start_run(live, automation))

        assert run["status"] == "success", run
        assert run["model"] == "claude-sonnet-4-5"

    def test_fallback_that_outlasts_the_budget_is_a_timeout(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        # Each refused model waits its retry-after: three tries of 5 s per model.
        prompt = "Check. " + directive(
            overloaded="claude-opus-4-5,claude-sonnet-4-5", retry_after=5
        )
        automation = make_automation(
            systemPrompt=prompt, model="premium", timeoutSeconds=12
        )

        run = live.wait_for_run(automation["id"], start_run(live, automation), 90)

        assert (run["status"], run["error"]) == ("failure", "timeout")


class TestDeleteInFlight:
    def test_delete_cancels_the_running_run_and_leaves_nothing(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(systemPrompt="Slow. " + directive(delay=40))
        run_id = start_run(live, automation)
        wait_until_running(live, run_id)
        flow_run_id = str(flow_run_id_of(run_id))
        deployment_id = str(deployment_id_of(automation["id"]))

        deleted = live.api.delete(f"/automations/{automation['id']}")

        assert deleted.status_code == 204
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            flow_run = live.prefect.get(f"/flow_runs/{flow_run_id}")
            if flow_run.status_code == 404:
                break
            time.sleep(1)
        assert live.prefect.get(f"/flow_runs/{flow_run_id}").status_code == 404
        assert live.prefect.get(f"/deployments/{deployment_id}").status_code == 404
        left = live.prefect.post(
            "/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}},
        ).json()
        assert left == []
        variable = live.prefect.get(f"/variables/name/workjet_stats_{deployment_id}")
        assert variable.status_code == 404
        assert live.api.get(f"/automations/{automation['id']}").status_code == 404


class TestBursts:
    def test_fifty_parallel_creates_give_fifty_distinct_automations(
        self, live: LiveStack
    ) -> None:
        body = {"systemPrompt": "Burst.", "schedule": "0 8 * * *"}

        def create(index: int) -> Any:
            return live.api.post("/automations", json={**body, "name": f"b{index}"})

        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(create, range(50)))
        try:
            assert [a.status_code for a in answers] == [201] * 50
            ids = {a.json()["id"] for a in answers}
            assert len(ids) == 50
        finally:
            for answer in answers:
                if answer.status_code == 201:
                    live.api.delete(f"/automations/{answer.json()['id']}")

    def test_fifty_parallel_runs_are_all_recorded_and_none_crashes(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        # Every run of the burst runs, side by side: the requests, the run
        # creation and the worker's writes all land on Prefect at once.
        automation = make_automation(
            systemPrompt="Quick. " + directive(delay=2), overlapPolicy="allow"
        )
        path = f"/automations/{automation['id']}/run"

        # A burst queues in the facade and Prefect: allow each request a while.
        def run(_: int) -> str:
            answer = live.api.post(path, timeout=120)
            assert answer.status_code == 202, answer.text
            return str(answer.json()["runId"])

        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(run, range(50)))

        assert len(set(answers)) == 50
        history = live.api.get(f"{path}s?limit=100").json()
        assert sorted(r["id"] for r in history["runs"]) == sorted(answers)
        deadline = time.monotonic() + 180
        runs: list[dict[str, Any]] = history["runs"]
        while time.monotonic() < deadline:
            runs = live.api.get(f"{path}s?limit=100").json()["runs"]
            if all(run["status"] != "running" for run in runs):
                break
            time.sleep(2)
        outcomes = sorted({(r["status"], r["error"]) for r in runs}, key=str)
        assert outcomes == [("success", None)]
