"""Run control and visibility on a real stack: one run, cancel, replay, logs,
trigger and time filters, schedule previews and idempotent requests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flows.ids import deployment_id_of, flow_run_id_of
from tests.integration.conftest import (
    LiveStack,
    Receiver,
    directive,
    start_run,
)

pytestmark = pytest.mark.integration


def processes_of(flow_run_id: str) -> list[int]:
    """Processes whose environment names this flow run (the worker sets it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode() in environment:
            found.append(int(entry.name))
    return found


def is_running(live: LiveStack, flow_run_id: str) -> bool:
    flow_run = live.prefect.get(f"/flow_runs/{flow_run_id}").json()
    return bool(flow_run["state"]["type"] == "RUNNING")


@pytest.fixture
def finished_run(
    live: LiveStack, make_automation: Callable[..., dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    automation = make_automation()
    run = live.wait_for_run(automation["id"], start_run(live, automation))
    return automation, run


class TestReadRun:
    def test_one_run_is_the_same_record_as_in_the_list(
        self, live: LiveStack, finished_run: tuple[dict[str, Any], dict[str, Any]]
    ) -> None:
        automation, run = finished_run

        one = live.api.get(f"/automations/{automation['id']}/runs/{run['id']}")

        assert one.status_code == 200
        assert one.json() == run

    def test_run_of_another_automation_or_organization_is_404(
        self,
        live: LiveStack,
        make_automation: Callable[..., dict[str, Any]],
        finished_run: tuple[dict[str, Any], dict[str, Any]],
    ) -> None:
        automation, run = finished_run
        other = make_automation()

        paths = [
            f"/automations/{other['id']}/runs/{run['id']}",
            f"/automations/{automation['id']}/runs/run_{'0' * 32}",
            f"/automations/{automation['id']}/runs/not-a-run",
        ]
        for path in paths:
            assert live.api.get(path).status_code == 404, path
        foreign = live.other.get(f"/automations/{automation['id']}/runs/{run['id']}")
        assert foreign.status_code == 404
        assert foreign.json()["error"]["type"] == "not_found_error"

    def test_every_run_endpoint_answers_404_to_another_organization(
        self, live: LiveStack, finished_run: tuple[dict[str, Any], dict[str, Any]]
    ) -> None:
        automation, run = finished_run
        base = f"/automations/{automation['id']}"
        requests = [
            ("GET", f"{base}/runs/{run['id']}/logs"),
            ("POST", f"{base}/runs/{run['id']}/cancel"),
            ("POST", f"{base}/runs/{run['id']}/replay"),
            ("GET", f"{base}/schedule"),
            ("GET", f"{base}/runs?trigger=manual"),
        ]

        for method, path in requests:
            answer = live.other.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
        assert live.api.get(f"{base}/runs").json()["total"] == 1


class TestCancelRun:
    def test_running_run_ends_cancelled_with_no_process_and_no_delivery(
        self,
        live: LiveStack,
        make_automation: Callable[..., dict[str, Any]],
        receiver: str,
    ) -> None:
        automation = make_automation(
            systemPrompt="Slow. " + directive(delay=40),
            channels=[{"type": "webhook", "url": receiver}],
        )
        run_id = start_run(live, automation)
        flow_run_id = str(flow_run_id_of(run_id))
        deadline = time.monotonic() + 60
        while not is_running(live, flow_run_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert is_running(live, flow_run_id), "the run never started"
        if live.stack.config.worker == "process":
            assert processes_of(flow_run_id), "the run never started a process"

        cancelled = live.api.post(
            f"/automations/{automation['id']}/runs/{run_id}/cancel"
        )

        assert cancelled.status_code == 202, cancelled.text
        run = live.wait_for_run(automation["id"], run_id, timeout=60)
        assert (run["status"], run["error"]) == ("failure", "cancelled")
        deadline = time.monotonic() + 60
        while processes_of(flow_run_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [
            Path(f"/proc/{pid}/cmdline").read_bytes()
            for pid in processes_of(flow_run_id)
        ]
        assert left == []
        assert Receiver.received == []
        state = live.prefect.get(f"/flow_runs/{flow_run_id}").json()["state"]
        assert state["type"] == "CANCELLED"

    def test_cancelling_a_finished_run_is_409(
        self, live: LiveStack, finished_run: tuple[dict[str, Any], dict[str, Any]]
    ) -> None:
        automation, run = finished_run

        answer = live.api.post(
            f"/automations/{automation['id']}/runs/{run['id']}/cancel"
        )

        assert answer.status_code == 409
        assert answer.json()["error"]["type"] == "conflict_error"


class TestReplayAndFilters:
    def test_replay_is_a_new_run_that_names_the_run_it_replays(
        self, live: LiveStack, finished_run: tuple[dict[str, Any], dict[str, Any]]
    ) -> None:
        automation, run = finished_run
        base = f"/automations/{automation['id']}"

        replay = live.api.post(f"{base}/runs/{run['id']}/replay")

        assert replay.status_code == 202, replay.text
        assert replay.json()["replayOf"] == run["id"]
        replayed = live.wait_for_run(automation["id"], replay.json()["runId"])
        assert (replayed["trigger"], replayed["replayOf"]) == ("replay", run["id"])
        assert replayed["status"] == "success"

        only_replays = live.api.get(f"{base}/runs?trigger=replay").json()
        only_manual = live.api.get(f"{base}/runs?trigger=manual").json()
        assert [r["id"] for r in only_replays["runs"]] == [replayed["id"]]
        assert [r["id"] for r in only_manual["runs"]] == [run["id"]]
        assert live.api.get(f"{base}/runs?trigger=schedule").json()["total"] == 0

    def test_time_range_filters_on_started_at(
        self, live: LiveStack, finished_run: tuple[dict[str, Any], dict[str, Any]]
    ) -> None:
        automation, run = finished_run
        base = f"/automations/{automation['id']}/runs"

        inside = live.api.get(base, params={"from": "2020-01-01T00:00:00Z"}).json()
        after = live.api.get(base, params={"from": "2099-01-01T00:00:00Z"}).json()
        reversed_range = live.api.get(
            base, params={"from": "2030-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"}
        )
        garbage = live.api.get(base, params={"to": "yesterday"})

        assert [r["id"] for r in inside["runs"]] == [run["id"]]
        assert after == {"runs": [], "total": 0}
        assert reversed_range.status_code == 422
        assert reversed_range.json()["error"]["param"] == "from"
        assert garbage.status_code == 422
        assert garbage.json()["error"]["param"] == "to"
        for bad in ("1700000000", "0001-01-01T00:00:00+01:00", "2026-04-14T13:00:00"):
            refused = live.api.get(base, params={"from": bad})
            assert refused.status_code == 422, bad
            assert refused.json()["error"]["param"] == "from"

    def test_to_excludes_its_own_instant(
        self, live: LiveStack, finished_run: tuple[dict[str, Any], dict[str, Any]]
    ) -> None:
        automation, run = finished_run
        flow_run = live.prefect.get(f"/flow_runs/{flow_run_id_of(run['id'])}").json()
        started = flow_run["start_time"].replace("+00:00", "Z")
        base = f"/automations/{automation['id']}/runs"

        up_to = live.api.get(base, params={"to": started}).json()
        at = live.api.get(base, params={"from": started}).json()

        assert up_to["total"] == 0
        assert at["total"] == 1

    def test_logs_are_the_runs_prefect_log_lines(
        self, live: LiveStack, finished_run: tuple[dict[str, Any], dict[str, Any]]
    ) -> None:
        automation, run = finished_run
        path = f"/automations/{automation['id']}/runs/{run['id']}/logs"

        logs = live.api.get(path).json()
        first = live.api.get(path, params={"limit": 1}).json()

        messages = [line["message"] for line in logs["logs"]]
        assert any(f"run started automation={automation['id']}" in m for m in messages)
        assert {line["level"] for line in logs["logs"]} <= {
            "debug",
            "info",
            "warning",
            "error",
            "critical",
        }
        assert len(first["logs"]) == 1 and first["hasMore"] is True
        largest = live.api.get(path, params={"limit": 200})
        assert largest.status_code == 200
        assert largest.json()["hasMore"] is False


class TestSchedulePreview:
    @pytest.mark.parametrize(
        ("cron", "start", "day", "expected"),
        [
            (
                "30 1 * * *",
                "2027-11-05T00:00:00Z",
                "2027-11-07",
                ["2027-11-07T05:30:00Z"],
            ),
            (
                "30 2 * * *",
                "2027-03-12T00:00:00Z",
                "2027-03-14",
                ["2027-03-14T07:30:00Z"],
            ),
        ],
    )
    def test_preview_across_daylight_saving_equals_the_runs_prefect_creates(
        self,
        live: LiveStack,
        make_automation: Callable[..., dict[str, Any]],
        cron: str,
        start: str,
        day: str,
        expected: list[str],
    ) -> None:
        automation = make_automation(schedule=cron, timezone="America/New_York")
        deployment_id = str(deployment_id_of(automation["id"]))

        preview = live.api.get(
            f"/automations/{automation['id']}/schedule",
            params={"from": start, "count": 3},
        ).json()
        scheduled = live.prefect_post(
            f"/deployments/{deployment_id}/schedule",
            {
                "start_time": start,
                "end_time": "2027-12-31T00:00:00Z",
                "max_runs": 3,
            },
        )
        assert scheduled.status_code < 300, scheduled.text
        created = live.prefect.post(
            "/flow_runs/filter",
            json={
                "flow_runs": {
                    "deployment_id": {"any_": [deployment_id]},
                    "expected_start_time": {"after_": start},
                },
                "sort": "EXPECTED_START_TIME_ASC",
                "limit": 3,
            },
        ).json()

        previewed = [t["at"] for t in preview["nextRuns"]]
        prefect_times = [r["expected_start_time"][:19] + "Z" for r in created]
        assert [t for t in previewed if t.startswith(day)] == expected
        assert previewed == prefect_times
        assert preview["description"].startswith(
            "At 01:30" if "1 *" in cron[:5] else "At"
        )
        assert preview["nextRuns"][0]["local"].endswith(("-04:00", "-05:00"))

    def test_preview_describes_the_cron_in_plain_english(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation(schedule="0 8 * * 1-5")

        preview = live.api.get(
            f"/automations/{automation['id']}/schedule", params={"count": 50}
        ).json()

        assert preview["description"] == "At 08:00, Monday through Friday"
        assert len(preview["nextRuns"]) == 50
        too_many = live.api.get(
            f"/automations/{automation['id']}/schedule", params={"count": 51}
        )
        assert too_many.json()["error"]["param"] == "count"
        far = live.api.get(
            f"/automations/{automation['id']}/schedule",
            params={"from": "9999-12-30T00:00:00Z"},
        )
        assert far.status_code == 422
        assert far.json()["error"]["param"] == "from"

    def test_timezones_lists_accepted_names(self, live: LiveStack) -> None:
        listing = live.api.get("/timezones").json()

        assert "America/New_York" in listing["timezones"]
        assert "UTC" in listing["timezones"]
        assert listing["total"] == len(listing["timezones"])


class TestIdempotency:
    def body(self) -> dict[str, Any]:
        return {
            "name": f"Idempotent {uuid.uuid4().hex[:6]}",
            "systemPrompt": "Summarise.",
            "schedule": "0 9 * * 1",
        }

    def test_same_key_same_body_creates_once(self, live: LiveStack) -> None:
        key = {"Idempotency-Key": str(uuid.uuid4())}
        body = self.body()

        first = live.api.post("/automations", json=body, headers=key)
        second = live.api.post("/automations", json=body, headers=key)
        changed = live.api.post(
            "/automations", json={**body, "name": "Other"}, headers=key
        )
        elsewhere = live.other.post("/automations", json=body, headers=key)

        try:
            assert (first.status_code, second.status_code) == (201, 201)
            assert second.json()["id"] == first.json()["id"]
            assert changed.status_code == 409
            assert changed.json()["error"]["param"] == "Idempotency-Key"
            assert elsewhere.status_code == 201
            assert elsewhere.json()["id"] != first.json()["id"]
            named = [
                a
                for a in live.api.get("/automations").json()["automations"]
                if a["name"] == body["name"]
            ]
            assert len(named) == 1
        finally:
            live.api.delete(f"/automations/{first.json()['id']}")
            live.other.delete(f"/automations/{elsewhere.json()['id']}")

    def test_identical_requests_at_the_same_moment_act_once(
        self, live: LiveStack
    ) -> None:
        key = {"Idempotency-Key": str(uuid.uuid4())}
        body = self.body()

        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(
                pool.map(
                    lambda _: live.api.post("/automations", json=body, headers=key),
                    range(4),
                )
            )

        ids = {a.json()["id"] for a in answers if a.status_code == 201}
        try:
            assert [a.status_code for a in answers] == [201] * 4
            assert len(ids) == 1
        finally:
            for automation_id in ids:
                live.api.delete(f"/automations/{automation_id}")

    def test_manual_run_with_the_same_key_starts_one_run(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        automation = make_automation()
        key = {"Idempotency-Key": str(uuid.uuid4())}
        path = f"/automations/{automation['id']}/run"

        first = live.api.post(path, headers=key).json()
        second = live.api.post(path, headers=key).json()

        assert first == second
        assert (
            live.api.get(f"/automations/{automation['id']}/runs").json()["total"] == 1
        )
