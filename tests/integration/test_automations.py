"""The automation endpoints against a real Prefect server: what the API answers
and what Prefect holds afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from flows.ids import deployment_id_of
from tests.integration.conftest import LiveStack

pytestmark = pytest.mark.integration

REFERENCE_EXAMPLE = {
    "name": "Daily Documentation Scan",
    "description": "Check documentation for accuracy and flag outdated sections",
    "systemPrompt": "Review the documentation files and identify any sections that are"
    " outdated, inaccurate, or missing. Report findings as a bullet list.",
    "model": "premium",
    "schedule": "0 8 * * 1-5",
    "timezone": "America/Los_Angeles",
    "tools": ["filesystem", "github"],
    "channels": [{"type": "slack", "channel": "#docs-team"}],
}


def deployment(live: LiveStack, automation_id: str) -> dict[str, Any]:
    response = live.prefect.get(f"/deployments/{deployment_id_of(automation_id)}")
    assert response.status_code == 200, response.text
    return dict(response.json())


class TestCreateAutomation:
    def test_reference_example_names_the_unconfigured_connector(
        self, live: LiveStack
    ) -> None:
        response = live.api.post("/automations", json=REFERENCE_EXAMPLE)

        assert response.status_code == 422
        error = response.json()["error"]
        assert error["param"] == "tools[0]"
        assert "'filesystem' is not configured" in error["message"]

    def test_reference_example_is_created_once_connectors_are_configured(
        self, live: LiveStack
    ) -> None:
        _connectors(live, ["filesystem", "github"], "asave")
        try:
            response = live.api.post("/automations", json=REFERENCE_EXAMPLE)
        finally:
            _connectors(live, ["filesystem", "github"], "delete")

        assert response.status_code == 201, response.text
        body = response.json()
        assert body["tools"] == ["filesystem", "github"]
        assert body["channels"] == [{"type": "slack", "channel": "#docs-team"}]
        live.api.delete(f"/automations/{body['id']}")

    def test_creates_a_deployment_with_schedule_tags_and_parameters(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(
            model="premium", schedule="30 2 * * *", timezone="America/New_York"
        )

        held = deployment(live, automation["id"])
        assert "workjet-org:default" in held["tags"]
        assert held["paused"] is False
        schedule = held["schedules"][0]["schedule"]
        assert (schedule["cron"], schedule["timezone"]) == (
            "30 2 * * *",
            "America/New_York",
        )
        assert held["parameters"]["system_prompt"] == automation["systemPrompt"]
        assert held["parameters"]["model"] == "premium"
        assert held["work_pool_name"] == "workjet"
        assert held["entrypoint"] == "flows/automation.py:run_automation"

    def test_webhook_secret_is_stored_as_a_prefect_secret_and_never_returned(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        secret = f"whsec_{uuid.uuid4().hex}"
        automation = make_automation(
            channels=[
                {"type": "webhook", "url": "https://example.com/h", "secret": secret}
            ]
        )

        assert secret not in str(automation)
        assert automation["channels"][0]["secretSet"] is True
        held = deployment(live, automation["id"])
        assert secret not in str(held)
        reread = live.api.get(f"/automations/{automation['id']}").json()
        assert secret not in str(reread)


class TestListAndRead:
    def test_list_counts_only_the_callers_organization(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        mine = make_automation()

        listing = live.api.get("/automations").json()
        others = live.other.get("/automations").json()

        assert mine["id"] in [a["id"] for a in listing["automations"]]
        assert listing["total"] == len(listing["automations"])
        assert mine["id"] not in [a["id"] for a in others["automations"]]
        assert live.other.get(f"/automations/{mine['id']}").status_code == 404

    def test_read_has_a_run_summary(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation()

        detail = live.api.get(f"/automations/{automation['id']}").json()

        assert detail["runs"] == {
            "total": 0,
            "success": 0,
            "failure": 0,
            "running": 0,
            "lastRunAt": None,
            "lastStatus": None,
            "tokensInput": 0,
            "tokensOutput": 0,
            "estimatedCost": 0.0,
        }


class TestUpdateAutomation:
    def test_schedule_change_leaves_no_run_at_the_old_time(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(schedule="* * * * *", timezone="UTC")
        deployment_id = str(deployment_id_of(automation["id"]))
        live.prefect.post(f"/deployments/{deployment_id}/schedule", json={})

        updated = live.api.put(
            f"/automations/{automation['id']}",
            json={"schedule": "0 3 1 1 *", "timezone": "Europe/London"},
        )

        assert updated.status_code == 200
        assert updated.json()["nextRunAt"].endswith("-01-01T03:00:00Z")
        scheduled = live.prefect.post(
            "/flow_runs/filter",
            json={
                "flow_runs": {
                    "deployment_id": {"any_": [deployment_id]},
                    "state": {"type": {"any_": ["SCHEDULED"]}},
                }
            },
        ).json()
        assert all("-01-01T03:00:00" in run["expected_start_time"] for run in scheduled)

    def test_only_named_fields_change(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(description="before")

        updated = live.api.put(
            f"/automations/{automation['id']}", json={"model": "enterprise"}
        ).json()

        assert updated["model"] == "enterprise"
        assert updated["description"] == "before"
        assert updated["systemPrompt"] == automation["systemPrompt"]
        assert updated["schedule"] == automation["schedule"]

    def test_unknown_model_is_422_naming_model(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation()

        response = live.api.put(
            f"/automations/{automation['id']}", json={"model": "gpt-4"}
        )

        assert response.status_code == 422
        assert response.json()["error"]["param"] == "model"


class TestLifecycle:
    def test_pause_removes_scheduled_runs_and_activate_restores_next_run(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(schedule="*/5 * * * *", timezone="UTC")
        deployment_id = str(deployment_id_of(automation["id"]))

        paused = live.api.post(f"/automations/{automation['id']}/pause")
        scheduled = live.prefect.post(
            "/flow_runs/count",
            json={
                "flow_runs": {
                    "deployment_id": {"any_": [deployment_id]},
                    "state": {"type": {"any_": ["SCHEDULED"]}},
                }
            },
        ).json()

        assert paused.json() == {"id": automation["id"], "status": "paused"}
        assert scheduled == 0
        assert deployment(live, automation["id"])["paused"] is True

        activated = live.api.post(f"/automations/{automation['id']}/activate").json()
        assert activated["status"] == "active"
        assert activated["nextRunAt"][14:16] in {
            "00",
            "05",
            "10",
            "15",
            "20",
            "25",
            "30",
            "35",
            "40",
            "45",
            "50",
            "55",
        }

    def test_delete_removes_deployment_and_history(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation()
        live.api.post(f"/automations/{automation['id']}/run")

        deleted = live.api.delete(f"/automations/{automation['id']}")

        assert deleted.status_code == 204
        deployment_id = str(deployment_id_of(automation["id"]))
        assert live.prefect.get(f"/deployments/{deployment_id}").status_code == 404
        remaining = live.prefect.post(
            "/flow_runs/count",
            json={"flow_runs": {"deployment_id": {"any_": [deployment_id]}}},
        ).json()
        assert remaining == 0
        for path in ("", "/runs", "/run", "/pause"):
            method = "GET" if path in ("", "/runs") else "POST"
            answer = live.api.request(method, f"/automations/{automation['id']}{path}")
            assert answer.status_code == 404, path


class TestPrefectDeploy:
    def test_automation_declared_in_prefect_yaml_appears_under_default_org(
        self, live: LiveStack
    ) -> None:
        live.prefect_cli("deploy", "--name", "weekday-docs-review", "--no-prompt")

        listing = live.api.get("/automations").json()["automations"]
        declared = [a for a in listing if a["name"] == "Weekday docs review"]

        assert len(declared) == 1
        assert declared[0]["schedule"] == "0 8 * * 1-5"
        assert declared[0]["timezone"] == "America/Los_Angeles"
        assert live.api.delete(f"/automations/{declared[0]['id']}").status_code == 204


def _connectors(live: LiveStack, ids: list[str], action: str) -> None:
    """Save or delete connector blocks the way an operator would, through Prefect."""
    act = (
        "await WorkjetMcpConnector(command='true').asave(name, overwrite=True)"
        if action == "asave"
        else "await WorkjetMcpConnector.adelete(name)"
    )
    script = (
        "import asyncio\n"
        "from blocks import WorkjetMcpConnector\n"
        "async def main():\n"
        f"    for name in {ids!r}:\n"
        f"        {act}\n"
        "asyncio.run(main())\n"
    )
    live.run_python(script)


class TestPrefectCallsPerRequest:
    def test_calls_do_not_grow_with_automations_or_runs(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        first = make_automation()
        live.api.post(f"/automations/{first['id']}/run")

        def calls(path: str) -> int:
            return int(live.api.get(path).headers["X-Prefect-Calls"])

        before = {
            "list": calls("/automations"),
            "read": calls(f"/automations/{first['id']}"),
            "runs": calls(f"/automations/{first['id']}/runs"),
        }
        for _ in range(4):
            make_automation()
        for _ in range(5):
            live.api.post(f"/automations/{first['id']}/run")
        live.api.get("/automations")
        after = {
            "list": calls("/automations"),
            "read": calls(f"/automations/{first['id']}"),
            "runs": calls(f"/automations/{first['id']}/runs"),
        }

        assert after == before
        # Each count includes the key's check, one block read on every request.
        assert before == {"list": 4, "read": 5, "runs": 5}
