"""Guardrails through the whole stack: per-run caps stop a run on the worker and
its record keeps what it produced."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from blocks.catalog import TokenUsage, WorkjetModelCatalog
from tests.integration.conftest import LiveStack, directive, start_run

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
