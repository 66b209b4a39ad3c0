"""A fault drill on a stack of its own: every run must end true, once.

    .venv/bin/python -m bench.faults [--burst 50] [--lost-window 90] [--keep]

The command starts the whole service (stand-in model, Prefect server, bootstrap,
process worker, facade) on free ports of 127.0.0.1 with its data in a temporary
directory, injects these faults one after another, and checks what each must
leave behind:

  worker killed      a worker and its run's process are SIGKILLed mid-run; the run
                     must become a failure saying the worker was lost (Prefect's
                     heartbeat detector, `--lost-window` seconds), a new worker
                     starts, and the automation's next run must succeed
  paused while       an every-minute automation paused meanwhile gets no run, and
                     activating it replays none of the minutes it missed
  Prefect restarted  while down the facade answers 503 with Retry-After and the
                     contract's body; afterwards automations and history are as
                     before and a new run succeeds
  facade restarted   automations and history are as before
  model 529 / 429    scripted overloads and rate limits: retried, then the tier's
                     next model; the runs succeed
  burst              `--burst` manual runs requested at once all succeed

It then prints a table of the faults injected and, over every run the drill
requested, the runs lost (requested, never in history), stuck (still running at
the end), doubled (in history twice, or a run nobody requested) and failed other
than as the fault says. Lost, stuck and doubled must be 0; the exit status is 1
otherwise. With `--burst 10 --lost-window 60` it takes about 3-4 minutes on a
2-core machine; the default burst of 50 takes over 10, most of it the process
worker starting a Python process per run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from api.stack import Stack, StackConfig
from flows.ids import deployment_id_of, flow_run_id_of
from flows.outcomes import LOST_WORKER_ERROR

Json = dict[str, Any]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes_of(flow_run_id: str) -> list[int]:
    """Processes whose environment names this flow run (the worker sets it)."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@dataclass
class Fault:
    name: str
    held: bool
    detail: str


@dataclass
class DrillReport:
    faults: list[Fault] = field(default_factory=list)
    requested: int = 0
    lost: int = 0
    stuck: int = 0
    doubled: int = 0
    unexpected_failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            all(fault.held for fault in self.faults)
            and self.lost == self.stuck == self.doubled == 0
            and not self.unexpected_failures
        )

    def table(self) -> str:
        lines = ["| fault | held | detail |", "|---|---|---|"]
        lines += [
            f"| {f.name} | {'yes' if f.held else 'NO'} | {f.detail} |"
            for f in self.faults
        ]
        lines += [
            "",
            "| faults injected | runs requested | lost | stuck | doubled |"
            " failed unexpectedly |",
            "|---|---|---|---|---|---|",
            f"| {len(self.faults)} | {self.requested} | {self.lost} | {self.stuck}"
            f" | {self.doubled} | {len(self.unexpected_failures)} |",
        ]
        return "\n".join(lines)


class Drill:
    def __init__(self, home: Path, burst: int, lost_window: int) -> None:
        self.config = StackConfig(
            home=home,
            api_port=free_port(),
            prefect_port=free_port(),
            standin_port=free_port(),
            extra_env={"WORKJET_LOST_RUN_SECONDS": str(lost_window)},
        )
        self.stack = Stack(self.config)
        self.burst = burst
        self.lost_window = lost_window
        self.report = DrillReport()
        # Every run the drill asked for, and the error it may end with (None:
        # it must succeed).
        self.expected: dict[str, dict[str, str | None]] = {}
        self.workers = 0
        self.api = httpx.Client()
        self.prefect = httpx.Client(base_url=self.config.prefect_api_url, timeout=30)

    # ---- the stack ---------------------------------------------------------------

    def start(self) -> None:
        self.stack.start_standin()
        self.stack.start_prefect()
        key = self.stack.bootstrap()
        self.start_worker()
        self.stack.start_api()
        self.api = httpx.Client(
            base_url=self.config.api_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
        )

    def start_worker(self) -> None:
        self.workers += 1
        self.stack.start_worker(f"drill-worker-{self.workers}")

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        for process_name, process in self.stack.processes:
            if process_name == name and process.poll() is None:
                os.killpg(process.pid, sig)
                process.wait(timeout=30)

    # ---- API helpers -------------------------------------------------------------

    def create(self, **fields: Any) -> str:
        body = {"name": "Drill", "systemPrompt": "Report.", "schedule": "0 8 * * *"}
        answer = self.api.post("/automations", json={**body, **fields})
        answer.raise_for_status()
        return str(answer.json()["id"])

    def run(self, automation: str, error: str | None = None) -> str:
        answer = self.api.post(f"/automations/{automation}/run")
        answer.raise_for_status()
        run_id = str(answer.json()["runId"])
        self.expected.setdefault(automation, {})[run_id] = error
        return run_id

    def runs(self, automation: str) -> list[Json]:
        answer = self.api.get(f"/automations/{automation}/runs", params={"limit": 100})
        answer.raise_for_status()
        return list(answer.json()["runs"])

    def wait_for(self, automation: str, run_id: str, timeout: float) -> Json | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.runs(automation):
                if run["id"] == run_id and run["status"] != "running":
                    return run
            time.sleep(1)
        return None

    def wait_until_running(self, run_id: str, timeout: float = 90) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            flow_run = self.prefect.get(f"/flow_runs/{flow_run_id_of(run_id)}")
            if (flow_run.json().get("state") or {}).get("type") == "RUNNING":
                return True
            time.sleep(0.5)
        return False

    def snapshot(self) -> Json:
        automations = self.api.get("/automations").json()["automations"]
        return {
            a["id"]: sorted((r["id"], r["status"]) for r in self.runs(a["id"]))
            for a in automations
        }

    def note(self, name: str, held: bool, detail: str) -> None:
        self.report.faults.append(Fault(name, held, detail))
        print(f"{'held' if held else 'BROKE'}: {name}: {detail}", flush=True)

    # ---- the faults --------------------------------------------------------------

    def kill_worker_mid_run(self, after: Callable[[], None]) -> None:
        automation = self.create(systemPrompt="Slow. [standin: delay=120]")
        run_id = self.run(automation, error=LOST_WORKER_ERROR)
        if not self.wait_until_running(run_id):
            self.note("worker killed", False, "the run never started")
            return

        self.stop(f"drill-worker-{self.workers}", signal.SIGKILL)
        for pid in processes_of(str(flow_run_id_of(run_id))):
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        self.start_worker()
        after()

        run = self.wait_for(automation, run_id, timeout=self.lost_window + 60)
        seconds = time.monotonic() - killed
        lost = run is not None and run["error"] == LOST_WORKER_ERROR
        # The next run must not wait behind the lost one (skip lets one at a time).
        fast = {"systemPrompt": "Report."}
        self.api.put(f"/automations/{automation}", json=fast).raise_for_status()
        next_run = self.wait_for(automation, self.run(automation), timeout=120)
        unblocked = next_run is not None and next_run["status"] == "success"
        ended = f"{run['status']} ({run['error']})" if run else "still running"
        self.note(
            "worker killed",
            lost and unblocked and seconds < 120,
            f"the run: {ended} {seconds:.0f} s after the kill;"
            f" the next run: {next_run['status'] if next_run else 'still running'}",
        )

    def pause_while_waiting(self) -> Callable[[], None]:
        """Pause an every-minute automation now; the returned check runs later."""
        automation = self.create(schedule="* * * * *")
        self.api.post(f"/automations/{automation}/pause").raise_for_status()
        paused_at = time.monotonic()
        deployment = str(deployment_id_of(automation))

        def check() -> None:
            minutes = (time.monotonic() - paused_at) / 60
            during = self.count_runs(deployment)
            activated = self.api.post(f"/automations/{automation}/activate")
            now = activated.headers.get("date", "")
            past = self.count_runs(deployment, before_now=True)
            self.api.delete(f"/automations/{automation}").raise_for_status()
            self.note(
                "paused while scheduled",
                during == 0 and past == 0 and activated.status_code == 200,
                f"{during} runs in {minutes:.1f} paused minutes, {past} replayed"
                f" on activate ({now})",
            )

        return check

    def count_runs(self, deployment: str, before_now: bool = False) -> int:
        flow_runs: Json = {"deployment_id": {"any_": [deployment]}}
        if before_now:
            flow_runs["expected_start_time"] = {"before_": _utc_now()}
        answer = self.prefect.post("/flow_runs/count", json={"flow_runs": flow_runs})
        return int(answer.json())

    def restart_prefect(self) -> None:
        before = self.snapshot()
        self.stop("prefect-server")

        down = self.api.get("/automations")
        shaped = "error" in down.json() and "Retry-After" in down.headers
        self.stack.start_prefect()
        after = self.wait_for_snapshot(before)

        probe = self.create()
        run = self.wait_for(probe, self.run(probe), timeout=120)
        self.note(
            "Prefect restarted",
            down.status_code == 503 and shaped and after and run is not None,
            f"down: {down.status_code} Retry-After={down.headers.get('retry-after')};"
            f" history intact: {after}; a new run: {run and run['status']}",
        )

    def wait_for_snapshot(self, before: Json, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.snapshot() == before:
                    return True
            except (httpx.HTTPError, KeyError):
                pass
            time.sleep(1)
        return False

    def restart_facade(self) -> None:
        before = self.snapshot()
        self.stop("api")
        self.stack.start_api()
        self.note("facade restarted", self.snapshot() == before, "nothing it held")

    def model_capacity(self) -> None:
        overloaded = self.create(
            systemPrompt="[standin: error=529 times=2 retry_after=0.2] Report."
        )
        limited = self.create(
            systemPrompt="[standin: rate_limited=claude-opus-4-5 retry_after=0.2]",
            model="premium",
        )
        one = self.wait_for(overloaded, self.run(overloaded), timeout=120)
        two = self.wait_for(limited, self.run(limited), timeout=120)
        self.note(
            "model 529 and 429",
            bool(one and two and two["model"] == "claude-sonnet-4-5"),
            f"529 twice then {one and one['status']};"
            f" 429 on opus, answered by {two and two['model']}",
        )

    def burst_of_runs(self) -> None:
        automation = self.create(overlapPolicy="allow")
        with ThreadPoolExecutor(max_workers=self.burst) as pool:
            list(pool.map(lambda _: self.run(automation), range(self.burst)))

        deadline = time.monotonic() + 60 + 6 * self.burst
        while time.monotonic() < deadline:
            if all(r["status"] != "running" for r in self.runs(automation)):
                break
            time.sleep(2)
        succeeded = sum(r["status"] == "success" for r in self.runs(automation))
        self.note(
            f"burst of {self.burst} runs",
            succeeded == self.burst,
            f"{succeeded} of {self.burst} succeeded",
        )

    # ---- the tally ---------------------------------------------------------------

    def tally(self) -> None:
        report = self.report
        for automation, expected in self.expected.items():
            seen = self.runs(automation)
            ids = [run["id"] for run in seen]
            report.requested += len(expected)
            report.lost += len(set(expected) - set(ids))
            report.doubled += len(ids) - len(set(ids)) + len(set(ids) - set(expected))
            for run in seen:
                if run["status"] == "running":
                    report.stuck += 1
                elif run["id"] in expected and run["error"] != expected[run["id"]]:
                    report.unexpected_failures.append(f"{run['id']}: {run['error']}")

    def run_all(self) -> DrillReport:
        self.start()
        check_pause = self.pause_while_waiting()
        self.kill_worker_mid_run(after=self.model_capacity)
        check_pause()
        self.restart_prefect()
        self.restart_facade()
        self.burst_of_runs()
        self.tally()
        return self.report


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run_drill(home: Path, burst: int = 50, lost_window: int = 90) -> DrillReport:
    drill = Drill(home, burst, lost_window)
    try:
        return drill.run_all()
    finally:
        drill.stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--lost-window", type=int, default=90)
    parser.add_argument("--keep", action="store_true", help="keep data and logs")
    arguments = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="workjet-faults-"))
    try:
        report = run_drill(home, arguments.burst, arguments.lost_window)
    finally:
        if arguments.keep:
            print(f"data and logs in {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    print(report.table())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
