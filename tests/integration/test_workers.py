"""The in-process worker and Prefect's stock process worker on the real stack.

Each test gives its automations a work pool of their own (a `process` pool, as
`workjet` is) and starts the worker under test on it, so the stack's own worker
never takes their runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flows.ids import deployment_id_of, flow_run_id_of
from tests.integration.conftest import LiveStack, directive

pytestmark = pytest.mark.integration

Automation = dict[str, Any]


def start_pool_worker(
    live: LiveStack, kind: str, **environment: str
) -> tuple[str, subprocess.Popen[bytes]]:
    """A worker of `kind` on a new pool; the pool's name and the process."""
    pool = f"test-{kind}-{uuid.uuid4().hex[:6]}"
    process = live.stack.start_worker(
        name=pool, kind=kind, pool=pool, extra_env=environment
    )
    deadline = time.monotonic() + 60
    while live.prefect.get(f"/work_pools/{pool}").status_code != 200:
        assert process.poll() is None, f"the {kind} worker exited"
        assert time.monotonic() < deadline, f"the {kind} worker made no pool"
        time.sleep(0.5)
    return pool, process


def move_to_pool(live: LiveStack, automation: Automation, pool: str) -> None:
    deployment_id = deployment_id_of(automation["id"])
    for _ in range(10):  # sending again while SQLite is busy (503)
        moved = live.prefect.patch(
            f"/deployments/{deployment_id}", json={"work_pool_name": pool}
        )
        if moved.status_code != 503:
            break
        time.sleep(1)
    assert moved.status_code == 204, moved.text


def state_of(live: LiveStack, run_id: str) -> str:
    flow_run = live.prefect.get(f"/flow_runs/{flow_run_id_of(run_id)}").json()
    return str(flow_run["state"]["type"])


def wait_for_state(live: LiveStack, run_id: str, wanted: str) -> None:
    deadline = time.monotonic() + 60
    while state_of(live, run_id) != wanted:
        assert time.monotonic() < deadline, f"{run_id} never reached {wanted}"
        time.sleep(0.3)


def start_run(live: LiveStack, automation: Automation) -> str:
    """Ask for a manual run, again while the facade answers 503 (SQLite busy)."""
    for _ in range(10):
        response = live.api.post(f"/automations/{automation['id']}/run")
        if response.status_code != 503:
            break
        time.sleep(1)
    assert response.status_code == 202, response.text
    return str(response.json()["runId"])


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    """Stop a test's worker; one that outlasts SIGTERM (Prefect's stock worker can
    sit in a poll for a while) is killed, since its shutdown is not under test."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def bounded_pool(live: LiveStack) -> Iterator[str]:
    """An in-process worker that runs two flow runs at most, with heartbeats."""
    pool, process = start_pool_worker(
        live,
        "inprocess",
        WORKJET_WORKER_CONCURRENCY="2",
        PREFECT_RUNNER_HEARTBEAT_FREQUENCY="30",
    )
    yield pool
    stop_worker(process)


class TestInProcessWorker:
    def test_runs_keep_to_the_limit_and_record_like_a_process_run(
        self,
        live: LiveStack,
        make_automation: Callable[..., Automation],
        bounded_pool: str,
    ) -> None:
        prompt = "Report. " + directive(delay=2, input_tokens=700, output_tokens=90)
        # Runs of one automation may overlap here: the worker's bound is the limit.
        automation = make_automation(systemPrompt=prompt, overlapPolicy="allow")
        move_to_pool(live, automation, bounded_pool)

        run_ids = [start_run(live, automation) for _ in range(4)]
        most_running = 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            states = [state_of(live, run_id) for run_id in run_ids]
            most_running = max(most_running, states.count("RUNNING"))
            if all(s in ("COMPLETED", "FAILED", "CRASHED") for s in states):
                break
            time.sleep(0.3)

        assert most_running == 2
        runs = [live.wait_for_run(automation["id"], run_id) for run_id in run_ids]
        assert [run["status"] for run in runs] == ["success"] * 4
        assert {(run["tokensInput"], run["tokensOutput"]) for run in runs} == {
            (700, 90)
        }
        assert all(run["trigger"] == "manual" and run["output"] for run in runs)
        flow_run_id = str(flow_run_id_of(run_ids[0]))
        flow_run = live.prefect.get(f"/flow_runs/{flow_run_id}").json()
        assert flow_run["infrastructure_pid"]
        states = live.prefect.get(
            "/flow_run_states/", params={"flow_run_id": flow_run_id}
        ).json()
        assert [s["type"] for s in states][-2:] == ["RUNNING", "COMPLETED"]
        assert "PENDING" in [s["type"] for s in states]

    def test_each_run_sends_a_heartbeat_event(
        self,
        live: LiveStack,
        make_automation: Callable[..., Automation],
        bounded_pool: str,
    ) -> None:
        automation = make_automation(systemPrompt="Check. " + directive(delay=1))
        move_to_pool(live, automation, bounded_pool)
        run_id = start_run(live, automation)
        live.wait_for_run(automation["id"], run_id)
        resource = f"prefect.flow-run.{flow_run_id_of(run_id)}"

        deadline = time.monotonic() + 30
        while True:
            events = live.prefect_post(
                "/events/filter",
                {
                    "filter": {
                        "event": {"name": ["prefect.flow-run.heartbeat"]},
                        "resource": {"id": [resource]},
                    }
                },
            ).json()["events"]
            if events or time.monotonic() > deadline:
                break
            time.sleep(1)

        assert len(events) >= 1
        related = {item["prefect.resource.role"] for item in events[0]["related"]}
        assert {"flow", "deployment"} <= related

    def test_failing_and_cancelled_runs_leave_a_concurrent_run_alone(
        self,
        live: LiveStack,
        make_automation: Callable[..., Automation],
        bounded_pool: str,
    ) -> None:
        slow = make_automation(systemPrompt="Slow. " + directive(delay=30))
        broken = make_automation(systemPrompt="Broken. " + directive(error=401))
        steady = make_automation(systemPrompt="Steady. " + directive(delay=3))
        for automation in (slow, broken, steady):
            move_to_pool(live, automation, bounded_pool)

        slow_run = start_run(live, slow)
        wait_for_state(live, slow_run, "RUNNING")
        steady_run = start_run(live, steady)
        wait_for_state(live, steady_run, "RUNNING")
        cancel = live.api.post(f"/automations/{slow['id']}/runs/{slow_run}/cancel")
        broken_run = start_run(live, broken)

        assert cancel.status_code == 202, cancel.text
        cancelled = live.wait_for_run(slow["id"], slow_run, timeout=60)
        failed = live.wait_for_run(broken["id"], broken_run, timeout=60)
        finished = live.wait_for_run(steady["id"], steady_run, timeout=60)
        assert (cancelled["status"], cancelled["error"]) == ("failure", "cancelled")
        assert state_of(live, slow_run) == "CANCELLED"
        assert failed["status"] == "failure" and "401" in (failed["error"] or "")
        assert finished["status"] == "success", finished


class TestStopping:
    def test_sigterm_ends_the_worker_and_marks_its_run_crashed(
        self, live: LiveStack, make_automation: Callable[..., Automation]
    ) -> None:
        pool, process = start_pool_worker(
            live, "inprocess", WORKJET_WORKER_SHUTDOWN_GRACE_SECONDS="1"
        )
        automation = make_automation(systemPrompt="Long. " + directive(delay=60))
        move_to_pool(live, automation, pool)
        run_id = start_run(live, automation)
        wait_for_state(live, run_id, "RUNNING")

        began = time.monotonic()
        os.killpg(process.pid, signal.SIGTERM)
        code = process.wait(timeout=30)

        assert code == 0
        assert time.monotonic() - began < 15
        assert state_of(live, run_id) == "CRASHED"
        run = live.wait_for_run(automation["id"], run_id, timeout=10)
        assert run["status"] == "failure"


class TestStockProcessWorker:
    def test_prefects_process_worker_still_runs_the_pool_type(
        self, live: LiveStack, make_automation: Callable[..., Automation]
    ) -> None:
        pool, process = start_pool_worker(live, "process")
        prompt = "Report. " + directive(input_tokens=400, output_tokens=50)
        automation = make_automation(systemPrompt=prompt)
        move_to_pool(live, automation, pool)

        try:
            run = live.wait_for_run(automation["id"], start_run(live, automation))
        finally:
            stop_worker(process)

        assert run["status"] == "success", run
        assert (run["tokensInput"], run["tokensOutput"]) == (400, 50)
        work_pool = live.prefect.get(f"/work_pools/{pool}").json()
        assert work_pool["type"] == "process"
