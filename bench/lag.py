"""Schedule lag: how long after its scheduled time a scheduled run starts.

Automations are made through the facade with the cron `* * * * *`; Prefect then
schedules their next few minutes of runs with `POST /deployments/{id}/schedule`,
the same server-side computation its scheduler service runs (that service is off
during the benchmark, see `bench.benchmark`). The stack's worker takes the runs,
the stand-in model answers, and the lag of a run is its `startedAt` (the facade's
run record: when the flow's process started) minus the time it was scheduled for.
All automations fire at the start of each minute, as automations set for 08:00 do,
so the worker meets them in bursts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx

from flows.ids import automation_id, deployment_id_of, run_id

MINUTES = 3
LEAD_SECONDS = 40  # time for the worker to come up before the first minute
FINISH_SECONDS = 300


@dataclass
class Lag:
    seconds: list[float]
    automations: int
    minutes: int
    statuses: dict[str, int]


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def _scheduled_runs(
    prefect: httpx.Client, deployment_ids: list[str], start: datetime
) -> list[dict[str, Any]]:
    body = {
        "flow_runs": {
            "deployment_id": {"any_": deployment_ids},
            "expected_start_time": {"after_": start.isoformat()},
        },
        "limit": 200,
    }
    return list(prefect.post("/flow_runs/filter", json=body).json())


def measure_lag(api: httpx.Client, prefect: httpx.Client, runs_wanted: int) -> Lag:
    automations = math.ceil(runs_wanted / MINUTES)
    ids = []
    for index in range(automations):
        made = api.post(
            "/automations",
            json={
                "name": f"Every minute {index:02d}",
                "systemPrompt": "Say that the benchmark ran.",
                "schedule": "* * * * *",
            },
        )
        made.raise_for_status()
        ids.append(str(deployment_id_of(made.json()["id"])))

    now = datetime.now(UTC)
    start = (now + timedelta(seconds=LEAD_SECONDS + 60)).replace(
        second=0, microsecond=0
    )
    end = start + timedelta(minutes=MINUTES - 1, seconds=30)
    for deployment_id in ids:
        prefect.post(
            f"/deployments/{deployment_id}/schedule",
            json={
                "start_time": start.isoformat(),
                "end_time": end.isoformat(),
                "min_runs": MINUTES,
                "max_runs": MINUTES,
            },
        ).raise_for_status()

    runs = _scheduled_runs(prefect, ids, start - timedelta(seconds=1))
    if len(runs) != automations * MINUTES:
        raise RuntimeError(f"Prefect scheduled {len(runs)} runs, not {runs_wanted}")
    finished = _wait_until_finished(prefect, ids, start, end)
    return _lags(api, finished, automations)


def _wait_until_finished(
    prefect: httpx.Client, ids: list[str], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    time.sleep(max((end - datetime.now(UTC)).total_seconds(), 0))
    deadline = time.monotonic() + FINISH_SECONDS
    while time.monotonic() < deadline:
        runs = _scheduled_runs(prefect, ids, start - timedelta(seconds=1))
        if all(run["state"]["type"] in ("COMPLETED", "FAILED") for run in runs):
            return runs
        time.sleep(2)
    raise RuntimeError(f"scheduled runs did not finish within {FINISH_SECONDS} s")


def _lags(api: httpx.Client, runs: list[dict[str, Any]], automations: int) -> Lag:
    seconds: list[float] = []
    statuses: dict[str, int] = {}
    for flow_run in runs:
        public = automation_id(UUID(flow_run["deployment_id"]))
        path = f"/automations/{public}/runs/{run_id(UUID(flow_run['id']))}"
        record = api.get(path).json()
        statuses[record["status"]] = statuses.get(record["status"], 0) + 1

        # startedAt has second precision; Prefect's start time, which it is
        # written from, gives the same lag to the microsecond.
        started = _parse(flow_run["start_time"])
        if record["startedAt"] != started.strftime("%Y-%m-%dT%H:%M:%SZ"):
            raise RuntimeError(f"{record['id']}: startedAt disagrees with Prefect")
        scheduled = _parse(flow_run["expected_start_time"])
        seconds.append((started - scheduled).total_seconds())
    return Lag(seconds, automations, MINUTES, statuses)
