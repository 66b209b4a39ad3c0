"""Manual runs completed per minute, per worker, with the model answering in 2 s.

    .venv/bin/python -m bench.throughput [--runs 120] [--delay 2]
                                         [--workers inprocess,process]
                                         [--concurrency 32] [--keep]
                                         [--database-url URL]

For each worker kind in `--workers`, the command starts a whole stack of its own
(stand-in model, Prefect server on SQLite, that one worker, facade) on free ports
of 127.0.0.1 with its data in a temporary directory, exactly as `workjet up` does.
It creates one automation whose system prompt makes the stand-in answer after
`--delay` seconds, waits for one warm-up run, then asks the facade for `--runs`
manual runs (`POST /automations/:id/run`, one after another) and waits until
Prefect has every one of them in a final state. Then it prints the kinds side by
side:

  runs/minute       runs completed, over the time from the first request to the
                    last run's end
  completed         runs that ended Completed (the rest failed or crashed)
  start wait        a run's start (Prefect's `start_time`) minus its creation
                    (`created`), p50 and p95 in seconds
  run time          a run's `end_time` minus its `start_time`, p50
  peak concurrent   the most runs in state Running at one sample
  worker RSS        resident memory of the worker's process and all its
                    descendants (from /proc, sampled every 0.5 s): at rest
                    before the burst, and at its peak
  MB per run        (peak RSS - RSS at rest) / peak concurrent runs
  CPU s per run     CPU time (user and system) each process of the stack and
                    its descendants spent during the burst, divided by the runs
  503s              run requests the facade answered 503 (Prefect's SQLite busy),
                    each sent again after 0.5 s

The in-process worker runs at most `--concurrency` runs at once
(`WORKJET_WORKER_CONCURRENCY`); Prefect's stock process worker has no limit, as
`workjet up` starts it. `--keep` leaves the temporary directories behind.
`--database-url` puts Prefect on another database, such as PostgreSQL
(`postgresql+asyncpg://user@127.0.0.1:5432/db`); every kind then shares it, so give
it an empty one.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from api.stack import WORKER_KINDS, Stack, StackConfig
from bench.benchmark import free_ports
from flows.ids import deployment_id_of

SAMPLE_SECONDS = 0.5
FINAL_STATES = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]
PAGE = 200
MB = 1024 * 1024
BUSY_RETRIES = 20


@dataclass
class Result:
    kind: str
    runs: int
    completed: int
    per_minute: float
    start_waits: list[float]
    run_times: list[float]
    peak_running: int
    rest_rss: int
    peak_rss: int
    seconds: float
    busy: int
    cpu: dict[str, float]

    @property
    def mb_per_run(self) -> float:
        if not self.peak_running:
            return 0.0
        return (self.peak_rss - self.rest_rss) / self.peak_running / MB


@dataclass
class Sampler:
    """Samples the worker tree's RSS and Prefect's count of running runs."""

    pid: int
    prefect: httpx.Client
    deployment_id: str
    peak_rss: int = 0
    peak_running: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_SECONDS):
            self.peak_rss = max(self.peak_rss, tree_rss(self.pid))
            running = self.prefect.post(
                "/flow_runs/count",
                json={
                    "flow_runs": {
                        "deployment_id": {"any_": [self.deployment_id]},
                        "state": {"type": {"any_": ["RUNNING"]}},
                    }
                },
            )
            if running.status_code == 200:
                self.peak_running = max(self.peak_running, int(running.json()))


def _tree(pid: int) -> list[int]:
    """A process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))

    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    for member in _tree(pid):
        try:
            resident = int(Path(f"/proc/{member}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident * os.sysconf("SC_PAGE_SIZE")
    return total


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of a process, its descendants alive now, and
    the descendants it has waited for (a process per run ends and is reaped)."""
    ticks = 0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime (fields 14-17 of proc(5))
        ticks += sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _final_runs(prefect: httpx.Client, deployment_id: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    while True:
        page = prefect.post(
            "/flow_runs/filter",
            json={
                "flow_runs": {
                    "deployment_id": {"any_": [deployment_id]},
                    "state": {"type": {"any_": FINAL_STATES}},
                },
                "sort": "EXPECTED_START_TIME_ASC",
                "limit": PAGE,
                "offset": len(runs),
            },
        )
        page.raise_for_status()
        runs.extend(page.json())
        if len(page.json()) < PAGE:
            return runs


def _wait_final(
    prefect: httpx.Client, deployment_id: str, count: int, timeout: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _final_runs(prefect, deployment_id)
        if len(runs) >= count:
            return runs
        time.sleep(1)
    raise RuntimeError(f"{count} runs did not all finish within {timeout:.0f} s")


def measure(kind: str, args: argparse.Namespace) -> Result:
    home = Path(tempfile.mkdtemp(prefix=f"workjet-throughput-{kind}-"))
    api_port, prefect_port, standin_port = free_ports(3)
    config = StackConfig(
        home=home,
        api_port=api_port,
        prefect_port=prefect_port,
        standin_port=standin_port,
        worker=kind,
        database_url=args.database_url,
        extra_env={"WORKJET_WORKER_CONCURRENCY": str(args.concurrency)},
    )
    stack = Stack(config)
    try:
        print(f"[{kind}] starting a stack in {home}...", file=sys.stderr, flush=True)
        stack.start_standin()
        stack.start_prefect()
        key = stack.bootstrap()
        worker = stack.start_worker()
        stack.start_api()
        return _burst(kind, stack, key or stack.create_key("default"), worker.pid, args)
    finally:
        stack.stop()
        if args.keep:
            print(f"[{kind}] kept {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)


def _request_run(api: httpx.Client, automation: str) -> int:
    """Ask for one manual run; how many 503s (Prefect's SQLite busy) it took."""
    for busy in range(BUSY_RETRIES):
        answer = api.post(f"/automations/{automation}/run")
        if answer.status_code != 503:
            answer.raise_for_status()
            return busy
        time.sleep(0.5)
    answer.raise_for_status()
    return BUSY_RETRIES


def _burst(
    kind: str, stack: Stack, key: str, worker_pid: int, args: argparse.Namespace
) -> Result:
    config = stack.config
    headers = {"Authorization": f"Bearer {key}"}
    api = httpx.Client(base_url=config.api_url, headers=headers, timeout=60)
    prefect = httpx.Client(base_url=config.prefect_api_url, timeout=60)
    created = api.post(
        "/automations",
        json={
            "name": f"Throughput ({kind})",
            "systemPrompt": f"Summarise the week. [standin: delay={args.delay}]",
            "schedule": "0 8 * * 1",
            # The burst's runs of this one automation run side by side.
            "overlapPolicy": "allow",
        },
    )
    created.raise_for_status()
    automation = created.json()["id"]
    deployment_id = str(deployment_id_of(automation))

    print(f"[{kind}] warm-up run...", file=sys.stderr, flush=True)
    _request_run(api, automation)
    _wait_final(prefect, deployment_id, 1, 180)
    time.sleep(2)

    sampler = Sampler(worker_pid, prefect, deployment_id)
    rest_rss = tree_rss(worker_pid)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    print(f"[{kind}] queueing {args.runs} runs...", file=sys.stderr, flush=True)
    cpu_before = {name: cpu_seconds(p.pid) for name, p in stack.processes}
    began = time.time()
    busy = 0
    for _ in range(args.runs):
        busy += _request_run(api, automation)
    runs = _wait_final(prefect, deployment_id, args.runs + 1, 60 + args.runs * 10)
    sampler.stop.set()
    thread.join()
    cpu = {
        name: cpu_seconds(p.pid) - cpu_before[name]
        for name, p in stack.processes
        if name in cpu_before
    }

    burst = runs[1:]  # the first is the warm-up run
    ended = max(_time(run["end_time"]) for run in burst if run["end_time"])
    started = [run for run in burst if run["start_time"]]
    return Result(
        kind=kind,
        runs=len(burst),
        completed=sum(run["state"]["type"] == "COMPLETED" for run in burst),
        per_minute=len(burst) / (ended - began) * 60,
        start_waits=[_time(r["start_time"]) - _time(r["created"]) for r in started],
        run_times=[
            _time(r["end_time"]) - _time(r["start_time"])
            for r in started
            if r["end_time"]
        ],
        peak_running=sampler.peak_running,
        rest_rss=rest_rss,
        peak_rss=max(sampler.peak_rss, rest_rss),
        seconds=ended - began,
        busy=busy,
        cpu=cpu,
    )


def report(results: list[Result], args: argparse.Namespace) -> str:
    def row(name: str, cell: Any) -> str:
        return f"| {name} | " + " | ".join(cell(r) for r in results) + " |"

    database = "PostgreSQL" if "postgresql" in (args.database_url or "") else "SQLite"
    lines = [
        f"{args.runs} manual runs queued at once, the stand-in model answering after"
        f" {args.delay} s; Prefect on {database}; {os.cpu_count()} CPUs.",
        "",
        "| | " + " | ".join(r.kind for r in results) + " |",
        "|---|" + "---|" * len(results),
        row("runs/minute", lambda r: f"{r.per_minute:.1f}"),
        row("completed", lambda r: f"{r.completed}/{r.runs}"),
        row("burst took", lambda r: f"{r.seconds:.1f} s"),
        row(
            "start wait p50 / p95",
            lambda r: (
                f"{_percentile(r.start_waits, 0.5):.1f} s"
                f" / {_percentile(r.start_waits, 0.95):.1f} s"
            ),
        ),
        row("run time p50", lambda r: f"{_percentile(r.run_times, 0.5):.1f} s"),
        row("peak concurrent runs", lambda r: str(r.peak_running)),
        row(
            "worker RSS at rest / peak",
            lambda r: f"{r.rest_rss / MB:.0f} / {r.peak_rss / MB:.0f} MB",
        ),
        row("MB per concurrent run", lambda r: f"{r.mb_per_run:.1f}"),
        row("run requests answered 503", lambda r: str(r.busy)),
        *(
            row(
                f"CPU s per run: {name}",
                lambda r, name=name: f"{r.cpu.get(name, 0) / r.runs:.2f}",
            )
            for name in ("prefect-server", "workjet-worker", "api", "standin")
        ),
    ]
    return "\n".join(lines)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.throughput", description=__doc__)
    parser.add_argument("--runs", type=int, default=120)
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("--workers", default=",".join(WORKER_KINDS))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--database-url",
        default=None,
        help="Prefect's database (default SQLite in the temporary directory)",
    )
    args = parser.parse_args(argv)
    args.kinds = [kind.strip() for kind in args.workers.split(",") if kind.strip()]
    unknown = [kind for kind in args.kinds if kind not in WORKER_KINDS]
    if unknown or args.runs < 1:
        parser.error(f"--workers takes {', '.join(WORKER_KINDS)}; --runs 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    results = [measure(kind, args) for kind in args.kinds]
    print(report(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
