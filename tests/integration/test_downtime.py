"""Catch-up after real downtime: the worker of a stack of its own is stopped across
three fire times of `* * * * *` automations, one per catch-up mode, and started
again; each mode's outcome is read back from the run history.

This waits on the clock for about three minutes (three fire times must pass with
no worker), so all three modes share the one stop.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.stack import Stack, StackConfig
from flows.catchup import GRACE_VARIABLE
from tests.integration.conftest import directive, free_port

pytestmark = pytest.mark.integration

GRACE_SECONDS = 15
RESTART_AFTER_LAST = timedelta(seconds=25)  # past the grace, well before the next
MODES = ("latest", "all", "none")


@dataclass
class DowntimeStack:
    stack: Stack
    api: httpx.Client
    prefect: httpx.Client


@pytest.fixture(scope="module")
def downtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DowntimeStack]:
    config = StackConfig(
        home=tmp_path_factory.mktemp("downtime"),
        api_port=free_port(),
        prefect_port=free_port(),
        standin_port=free_port(),
        extra_env={GRACE_VARIABLE: str(GRACE_SECONDS)},
    )
    stack = Stack(config)
    try:
        stack.start_standin()
        stack.start_prefect()
        key = stack.bootstrap()
        stack.start_worker()
        stack.start_api()
        yield DowntimeStack(
            stack=stack,
            api=httpx.Client(
                base_url=config.api_url,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            ),
            prefect=httpx.Client(base_url=config.prefect_api_url, timeout=30),
        )
    finally:
        stack.stop()


def stop_worker(stack: Stack) -> None:
    for name, process in list(stack.processes):
        if name == "workjet-worker":
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
            stack.processes.remove((name, process))


def scheduled_runs(
    env: DowntimeStack, automation_id: str, fires: list[datetime]
) -> dict[datetime, str]:
    """The runs Prefect's scheduler made for these fire times, by fire time."""
    deployment = str(uuid.UUID(automation_id.removeprefix("auto_")))
    response = env.prefect.post(
        "/flow_runs/filter",
        json={
            "flow_runs": {"deployment_id": {"any_": [deployment]}},
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": 200,
        },
    )
    response.raise_for_status()
    found: dict[datetime, str] = {}
    for run in response.json():
        expected = datetime.fromisoformat(run["expected_start_time"]).astimezone(UTC)
        if expected in fires:
            found[expected] = "run_" + run["id"].replace("-", "")
    return found


def wait_until(moment: datetime) -> None:
    remaining = (moment - datetime.now(UTC)).total_seconds()
    if remaining > 0:
        time.sleep(remaining)


def finished_run(env: DowntimeStack, automation_id: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        response = env.api.get(f"/automations/{automation_id}/runs/{run_id}")
        if response.status_code == 200 and response.json()["status"] != "running":
            return dict(response.json())
        time.sleep(2)
    raise AssertionError(f"{run_id} did not finish")


def test_catch_up_modes_after_the_worker_missed_three_fire_times(
    downtime: DowntimeStack,
) -> None:
    automations = {}
    for mode in MODES:
        made = downtime.api.post(
            "/automations",
            json={
                "name": f"Every minute, catch-up {mode}",
                "systemPrompt": "Summarise. " + directive(),
                "schedule": "* * * * *",
                "catchUp": mode,
            },
        )
        assert made.status_code == 201, made.text
        automations[mode] = made.json()["id"]
    stop_worker(downtime.stack)

    # Fire times after the stop, beyond what the stopped worker could have fetched.
    first = (datetime.now(UTC) + timedelta(seconds=75)).replace(second=0, microsecond=0)
    fires = [first + timedelta(minutes=index) for index in range(3)]
    deadline = time.monotonic() + 120
    runs = {mode: scheduled_runs(downtime, automations[mode], fires) for mode in MODES}
    while any(len(found) < 3 for found in runs.values()):
        assert time.monotonic() < deadline, "the scheduler made no runs in time"
        time.sleep(2)
        runs = {m: scheduled_runs(downtime, automations[m], fires) for m in MODES}

    wait_until(fires[-1] + RESTART_AFTER_LAST)
    downtime.stack.start_worker()
    outcome = {
        mode: [finished_run(downtime, automations[mode], runs[mode][f]) for f in fires]
        for mode in MODES
    }

    errors = {mode: [run["error"] for run in outcome[mode]] for mode in MODES}
    later = "skipped: missed its fire time; a later one has passed (catchUp latest)"
    assert errors["all"] == [None, None, None]
    assert errors["none"] == ["skipped: missed its fire time (catchUp none)"] * 3
    assert errors["latest"][:2] == [later, later]
    # The most recent missed run runs, unless the worker only reached it after
    # the next fire time, which then is the most recent one.
    assert errors["latest"][2] in (None, later)
    assert [run["status"] for run in outcome["all"]] == ["success"] * 3
    assert all(run["trigger"] == "schedule" for run in outcome["none"])
