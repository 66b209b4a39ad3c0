"""Latency of the facade next to the Prefect call each endpoint wraps.

    .venv/bin/python -m bench.benchmark [--automations 1000] [--runs 10000]
                                        [--samples 30] [--keep]

The command starts its own Prefect server and facade on free ports of 127.0.0.1,
with their data in a temporary directory, seeds Prefect directly, times each
endpoint in the table and prints a Markdown table. Nothing else is needed: no
worker runs and no model is called.

Seeding goes straight to Prefect's REST API through Prefect's async client, two
requests in flight (the SQLite-backed server answers 503 to bursts; on a 2-core
machine 4 in flight seeded runs ~40% slower than 2, and 1 about as fast as 2). It
makes `--automations` deployments of the automation flow the way the facade makes
them (parameters, parameter schema, a weekly cron schedule, the
`workjet-org:default` tag, the `workjet` work pool, the pull steps), then `--runs`
COMPLETED flow runs, each with its markdown run-record artifact, spread over five
automations: 80% on one "big" automation, the target of the run-history rows and
of the single-automation read, the rest on four others. Those five also get the
running-totals variable the flow keeps. Prefect has no bulk create for flow runs
or artifacts, so each run costs two requests (25-30 runs/s on a 2-core machine).

Two of the server's background services are off for the whole run. The scheduler
would add future runs for every automation, and their write load, while the
numbers are taken; run history leaves future runs out anyway. The event
persister's writes of every run's state-change events lock SQLite and made
seeding 3-4 times slower; no measured request reads events.

Each row takes `--samples` calls to the facade and as many to Prefect, interleaved
(facade, Prefect, facade, ...) after 3 warm-up pairs, sequentially over keep-alive
connections. A latency runs from sending the request to having read the whole
body. The Prefect call is the one the facade makes for the data of that endpoint,
with the same filter, sort and limit:

  facade p50/p95   the facade endpoint, in milliseconds (nearest-rank percentiles)
  Prefect p50/p95  the wrapped Prefect call, sent directly to Prefect
  ratio p50        facade p50 / Prefect p50
  Prefect calls    the facade's `X-Prefect-Calls` header: all the Prefect requests
                   one facade request made. "(constant)" when every sample made
                   the same number; the facade keeps an API key's organization for
                   10 s, so a request made after that expired adds one call.

The facade lists at most 200 automations per page, so with `--automations 10000`
the list row measures the first page (and Prefect is asked for the same 200).
`--keep` leaves the temporary directory (Prefect's database, the logs) behind.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import random
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import httpx

from api.stack import WORK_POOL, Stack, StackConfig, stack_environment
from flows.ids import automation_id, stats_variable_name

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

IN_FLIGHT = 2
BUSY_RETRIES = 30  # with the pauses below, up to about a minute
WARMUP = 3
PAGE = 200
ORGANIZATION = "default"
ORGANIZATION_TAG = f"workjet-org:{ORGANIZATION}"
TAGS = ["workjet", ORGANIZATION_TAG]
CRON = "0 9 * * 1"
BIG_SHARE = 0.8
SMALL_AUTOMATIONS = 4
SETTLE_SECONDS = 5.0
CALLS_HEADER = "X-Prefect-Calls"
SCHEDULED_TAG = "auto-scheduled"  # the tag Prefect's scheduler gives its runs
MODEL_ID = "claude-sonnet-4-5"
PROMPT = (
    "Read the changes merged since last Monday and write a short summary for the"
    " team: what shipped, what broke, and what needs a reviewer."
)
OUTPUT = """## Weekly summary

- **Shipped:** the export endpoint, retries for webhook delivery, and the new
  onboarding checklist.
- **Broke:** nightly import failed twice on malformed CSV rows; fixed on Wednesday.
- **Needs review:** the billing migration (two open pull requests) and the
  permissions refactor.

Nothing is blocked. The release candidate is planned for Thursday.
"""


T = TypeVar("T")
J = TypeVar("J")


@dataclass
class Seeded:
    automations: int
    runs: dict[UUID, int]
    big: UUID
    automation_seconds: float
    run_seconds: float
    busy_retries: int


@dataclass
class Row:
    facade_label: str
    prefect_label: str
    facade_ms: list[float] = field(default_factory=list)
    prefect_ms: list[float] = field(default_factory=list)
    calls: Counter[int] = field(default_factory=Counter)


class Progress:
    """Prints a line at every tenth of the work, with the time it has taken."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self.started = time.monotonic()

    def tick(self) -> None:
        self.done += 1
        step = max(self.total // 10, 1)
        if self.done % step == 0 or self.done == self.total:
            elapsed = time.monotonic() - self.started
            print(
                f"  {self.what}: {self.done:,}/{self.total:,} in {elapsed:.0f} s",
                file=sys.stderr,
                flush=True,
            )


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def _now() -> str:
    return datetime.now(UTC).isoformat()


# ---- seeding -------------------------------------------------------------------


class Busy:
    """Sends a request again when Prefect answers 503 (SQLite busy).

    Prefect's client would wait 2, 4, 8... s before sending again; a busy SQLite
    frees up in milliseconds, so the seeding turns the client's retries off and
    retries here after a short, jittered pause that grows to 2 s. A 503 means the
    transaction was rolled back, so sending the same create again makes no
    duplicate.
    """

    def __init__(self) -> None:
        self.retries = 0

    async def send(self, call: Callable[[], Awaitable[T]]) -> T:
        from prefect.exceptions import PrefectHTTPStatusError

        for attempt in range(BUSY_RETRIES):
            try:
                return await call()
            except PrefectHTTPStatusError as error:
                busy = error.response.status_code == 503
                if not busy or attempt == BUSY_RETRIES - 1:
                    raise
            self.retries += 1
            pause = min(0.05 * 2**attempt, 2.0)
            await asyncio.sleep(random.uniform(0.5, 1.5) * pause)
        raise AssertionError("unreachable")


async def _in_workers(jobs: Iterable[J], work: Callable[[J], Awaitable[None]]) -> None:
    """Do the jobs in order with `IN_FLIGHT` workers: as many requests at most."""
    pending = iter(jobs)

    async def worker() -> None:
        for job in pending:
            await work(job)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


async def prepare() -> str:
    """Bootstrap the fresh server as `workjet up` does; a key for `default`."""
    from prefect.client.orchestration import get_client

    from api.bootstrap import bootstrap
    from api.keys import create_key

    async with get_client() as client:
        await bootstrap(client, WORK_POOL)
        return await create_key(client, ORGANIZATION, label="benchmark")


def _parameters(index: int) -> dict[str, Any]:
    return {
        "name": f"Benchmark automation {index:05d}",
        "system_prompt": PROMPT,
        "model": "standard",
        "tools": [],
        "channels": [],
    }


def _spread(deployment_ids: list[UUID], runs: int) -> dict[UUID, int]:
    """Runs per automation: most on the first, the rest shared by a few others."""
    others = deployment_ids[1 : 1 + SMALL_AUTOMATIONS]
    big_runs = math.ceil(runs * BIG_SHARE) if others else runs
    plan = {deployment_ids[0]: big_runs}
    rest = runs - big_runs
    for index, deployment_id in enumerate(others):
        plan[deployment_id] = rest // len(others) + (index < rest % len(others))
    return plan


async def _seed_automations(
    client: PrefectClient, busy: Busy, count: int
) -> list[UUID]:
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.utilities.callables import parameter_schema

    from api.settings import Settings
    from api.template import load_template
    from flows.automation import FLOW_NAME, run_automation

    settings = Settings()
    template = load_template(settings.prefect_yaml, settings.project_dir)
    schema = parameter_schema(run_automation).model_dump_for_openapi()
    flow_id = await client.create_flow_from_name(FLOW_NAME)
    schedule = DeploymentScheduleCreate(
        schedule=CronSchedule(cron=CRON, timezone="UTC"), active=True
    )
    created: dict[int, UUID] = {}
    progress = Progress("automations", count)

    async def create(index: int) -> None:
        parameters = _parameters(index)
        created[index] = await busy.send(
            functools.partial(
                client.create_deployment,
                flow_id=flow_id,
                name=f"{parameters['name']} [{secrets.token_hex(4)}]",
                description="Seeded by bench.benchmark.",
                parameters=parameters,
                parameter_openapi_schema=schema,
                schedules=[schedule],
                paused=False,
                tags=TAGS,
                work_pool_name=WORK_POOL,
                entrypoint=template.entrypoint,
                pull_steps=template.pull_steps,
            )
        )
        progress.tick()

    await _in_workers(range(count), create)
    return [created[index] for index in range(count)]


async def _seed_runs(
    client: PrefectClient,
    busy: Busy,
    plan: dict[UUID, int],
    parameters: dict[UUID, dict[str, Any]],
) -> None:
    from flows.automation import FLOW_NAME
    from flows.record import RunRecord, artifact_payload

    flow_id = await client.create_flow_from_name(FLOW_NAME)
    # Ordered by position so the automations' runs interleave in time, as they do
    # when several automations run over the same weeks.
    jobs = sorted(
        ((d, n) for d, count in plan.items() for n in range(count)),
        key=lambda job: job[1],
    )
    progress = Progress("runs", len(jobs))

    async def create(job: tuple[UUID, int]) -> None:
        deployment_id, number = job
        run = {
            "flow_id": str(flow_id),
            "deployment_id": str(deployment_id),
            "parameters": parameters[deployment_id],
            "tags": [*TAGS, SCHEDULED_TAG],
            "work_pool_name": WORK_POOL,
            "state": {"type": "COMPLETED", "message": "seeded by bench.benchmark"},
        }
        created = await busy.send(
            functools.partial(client.request, "POST", "/flow_runs/", json=run)
        )

        record = RunRecord(
            model=MODEL_ID,
            tokens_input=1200 + number % 300,
            tokens_output=350 + number % 150,
            estimated_cost=0.009,
            stop_reason="end_turn",
            has_output=True,
        )
        artifact = {
            **artifact_payload(record, OUTPUT),
            "flow_run_id": created.json()["id"],
        }
        await busy.send(
            functools.partial(client.request, "POST", "/artifacts/", json=artifact)
        )
        progress.tick()

    await _in_workers(jobs, create)

    # The running totals the flow keeps for every automation that has run.
    for deployment_id, count in plan.items():
        if not count:
            continue
        stats = {
            "lastRunAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tokensInput": 1300 * count,
            "tokensOutput": 400 * count,
            "estimatedCost": round(0.009 * count, 6),
        }
        variable = {"name": stats_variable_name(deployment_id), "value": stats}
        await busy.send(
            functools.partial(client.request, "POST", "/variables/", json=variable)
        )


async def seed(automations: int, runs: int) -> Seeded:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    busy = Busy()
    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
        async with get_client() as client:
            started = time.monotonic()
            deployment_ids = await _seed_automations(client, busy, automations)
            automation_seconds = time.monotonic() - started

            plan = _spread(deployment_ids, runs)
            parameters = {
                deployment_id: _parameters(index)
                for index, deployment_id in enumerate(deployment_ids)
                if deployment_id in plan
            }
            started = time.monotonic()
            await _seed_runs(client, busy, plan, parameters)
            run_seconds = time.monotonic() - started

    return Seeded(
        automations=automations,
        runs=plan,
        big=deployment_ids[0],
        automation_seconds=automation_seconds,
        run_seconds=run_seconds,
        busy_retries=busy.retries,
    )


# ---- measuring -----------------------------------------------------------------


def _timed(send: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = send()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        request = response.request
        raise RuntimeError(
            f"{request.method} {request.url} answered {response.status_code}:"
            f" {response.text[:300]}"
        )
    return elapsed, response


def measure(
    row: Row,
    facade: Callable[[], httpx.Response],
    prefect: Callable[[], httpx.Response],
    check: Callable[[Any, Any], bool],
    samples: int,
) -> Row:
    for index in range(WARMUP + samples):
        facade_ms, facade_response = _timed(facade)
        prefect_ms, prefect_response = _timed(prefect)
        if index == 0 and not check(facade_response.json(), prefect_response.json()):
            raise RuntimeError(f"{row.facade_label}: the facade and Prefect disagree")
        if index < WARMUP:
            continue
        row.facade_ms.append(facade_ms)
        row.prefect_ms.append(prefect_ms)
        row.calls[int(facade_response.headers[CALLS_HEADER])] += 1
    return row


def _runs_body(deployment_id: UUID, limit: int) -> dict[str, Any]:
    """What the facade's run history asks Prefect for (`history_filter`)."""
    return {
        "flow_runs": {
            "deployment_id": {"any_": [str(deployment_id)]},
            "expected_start_time": {"before_": _now()},
        },
        "sort": "EXPECTED_START_TIME_DESC",
        "limit": limit,
        "offset": 0,
    }


def measure_all(
    config: StackConfig, api_key: str, seeded: Seeded, samples: int
) -> list[Row]:
    big = seeded.big
    public = automation_id(big)
    listing = {
        "deployments": {"tags": {"all_": [ORGANIZATION_TAG]}},
        "sort": "CREATED_DESC",
        "limit": PAGE,
        "offset": 0,
    }

    def same_length(key: str) -> Callable[[Any, Any], bool]:
        return lambda facade, prefect: len(facade[key]) == len(prefect)

    headers = {"Authorization": f"Bearer {api_key}"}
    with (
        httpx.Client(base_url=config.api_url, headers=headers, timeout=60) as api,
        httpx.Client(base_url=config.prefect_api_url, timeout=60) as prefect,
    ):
        return [
            measure(
                Row(
                    "GET /v1/automations",
                    "POST /api/deployments/filter (tag, limit 200)",
                ),
                lambda: api.get("/automations"),
                lambda: prefect.post("/deployments/filter", json=listing),
                same_length("automations"),
                samples,
            ),
            measure(
                Row("GET /v1/automations/{id}", "GET /api/deployments/{uuid}"),
                lambda: api.get(f"/automations/{public}"),
                lambda: prefect.get(f"/deployments/{big}"),
                lambda facade, prefect: (
                    facade["id"] == automation_id(UUID(prefect["id"]))
                ),
                samples,
            ),
            measure(
                Row(
                    "GET /v1/automations/{id}/runs?limit=100",
                    "POST /api/flow_runs/filter (deployment, limit 100)",
                ),
                lambda: api.get(f"/automations/{public}/runs", params={"limit": 100}),
                lambda: prefect.post("/flow_runs/filter", json=_runs_body(big, 100)),
                same_length("runs"),
                samples,
            ),
            measure(
                Row(
                    "GET /v1/automations/{id}/runs?limit=20",
                    "POST /api/flow_runs/filter (deployment, limit 20)",
                ),
                lambda: api.get(f"/automations/{public}/runs", params={"limit": 20}),
                lambda: prefect.post("/flow_runs/filter", json=_runs_body(big, 20)),
                same_length("runs"),
                samples,
            ),
        ]


# ---- report --------------------------------------------------------------------


def _calls(counts: Counter[int]) -> str:
    if len(counts) == 1:
        return f"{next(iter(counts))} (constant)"
    return ", ".join(f"{calls} ({times}×)" for calls, times in sorted(counts.items()))


def report(
    rows: list[Row], seeded: Seeded, samples: int, load: tuple[float, float]
) -> str:
    big_runs = seeded.runs[seeded.big]
    other_runs = sum(seeded.runs.values()) - big_runs
    total_runs = sum(seeded.runs.values())
    seconds = seeded.automation_seconds + seeded.run_seconds
    lines = [
        f"Seeded {seeded.automations:,} automations and {total_runs:,} completed runs"
        f" (each with its run-record artifact): {big_runs:,} on the big automation"
        f" {automation_id(seeded.big)}, {other_runs:,} on"
        f" {len(seeded.runs) - 1} others.",
        f"Seeding took {seconds:.0f} s: automations {seeded.automation_seconds:.0f} s"
        f" ({seeded.automations / max(seeded.automation_seconds, 1e-9):.0f}/s),"
        f" runs {seeded.run_seconds:.0f} s"
        f" ({total_runs / max(seeded.run_seconds, 1e-9):.0f}/s), {IN_FLIGHT} requests"
        f" in flight; {seeded.busy_retries:,} requests were answered 503 (SQLite"
        " busy) and sent again.",
        f"{samples} samples per endpoint after {WARMUP} warm-ups, facade and Prefect"
        " interleaved; latencies in ms. The single-automation and run rows read the"
        " big automation.",
        f"Machine: {os.cpu_count()} CPUs; 1-minute load average {load[0]:.1f} before"
        f" and {load[1]:.1f} after measuring (every process on the machine counts).",
    ]
    if seeded.automations > PAGE:
        lines.append(
            f"The automation list row reads the first page: {PAGE} of"
            f" {seeded.automations:,}."
        )
    lines += [
        "",
        "| Facade endpoint | Prefect call it wraps | facade p50 | facade p95"
        " | Prefect p50 | Prefect p95 | ratio p50 | Prefect calls per request |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        facade_p50 = _percentile(row.facade_ms, 0.5)
        prefect_p50 = _percentile(row.prefect_ms, 0.5)
        lines.append(
            f"| `{row.facade_label}` | `{row.prefect_label}`"
            f" | {facade_p50:.1f} | {_percentile(row.facade_ms, 0.95):.1f}"
            f" | {prefect_p50:.1f} | {_percentile(row.prefect_ms, 0.95):.1f}"
            f" | {facade_p50 / prefect_p50:.1f}× | {_calls(row.calls)} |"
        )
    return "\n".join(lines)


# ---- command -------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--automations", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory"
    )
    args = parser.parse_args(argv)
    if args.automations < 1 or args.runs < 0 or args.samples < 1:
        parser.error("--automations and --samples must be >= 1, --runs >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    # Prefect reads its settings when it is first imported: point this process at
    # the benchmark's own server before anything imports Prefect.
    args = _arguments(argv)
    home = Path(tempfile.mkdtemp(prefix="workjet-bench-"))
    api_port, prefect_port, standin_port = _free_ports(3)
    config = StackConfig(
        home=home,
        api_port=api_port,
        prefect_port=prefect_port,
        standin_port=standin_port,
        extra_env={
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
        },
    )
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.update(
        {
            name: value
            for name, value in stack_environment(config).items()
            if name.startswith("PREFECT_")
        }
    )
    if "prefect" in sys.modules:
        raise RuntimeError("Prefect was imported before its settings were made")

    began = time.monotonic()
    stack = Stack(config)
    try:
        print(f"Starting Prefect (data in {home})...", file=sys.stderr, flush=True)
        stack.start_prefect()
        api_key = asyncio.run(prepare())
        stack.start_api()

        print("Seeding Prefect...", file=sys.stderr, flush=True)
        seeded = asyncio.run(seed(args.automations, args.runs))
        time.sleep(SETTLE_SECONDS)  # let background work from the seeding finish

        print("Measuring...", file=sys.stderr, flush=True)
        load_before = os.getloadavg()[0]
        rows = measure_all(config, api_key, seeded, args.samples)
        load_after = os.getloadavg()[0]
    finally:
        stack.stop()
        if args.keep:
            print(f"Kept {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)

    print(report(rows, seeded, args.samples, (load_before, load_after)))
    print(f"\nWhole run: {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
