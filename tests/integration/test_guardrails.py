"""Guardrails through the whole stack: per-run caps stop a run on the worker and
its record keeps what it produced; failed runs alert the channels, pause the
automation after too many in a row, and a recovery is announced once."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from blocks.catalog import TokenUsage, WorkjetModelCatalog
from flows.ids import flow_run_id_of
from tests.integration.conftest import LiveStack, Receiver, directive, start_run

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
            systemPrompt="Summarise. "
            + directive(error=529, times=2, retry_after=0.1),
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
