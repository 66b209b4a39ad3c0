"""Latency of the facade next to the Prefect calls each endpoint wraps, at two
sizes, and the lag of scheduled runs, on SQLite or PostgreSQL.

    .venv/bin/python -m bench.benchmark [--database sqlite|postgresql]
        [--automations 1000,10000] [--runs 1000,100000] [--samples 30]
        [--scheduled 30] [--keep]

The command starts its own Prefect server and facade on free ports of 127.0.0.1,
with their data in a temporary directory (SQLite) or in a new database of the
PostgreSQL server at `WORKJET_BENCH_POSTGRES_URL` (default: this machine's, user
postgres) that is dropped at the end; seeds Prefect directly, times each endpoint
at each size and prints Markdown tables.

Seeding (see `bench.clone`): one automation and one completed run with its
run-record artifact are made through Prefect's REST API exactly as the facade and
the flow make them; the rest are copies of those rows written in bulk into
Prefect's own tables through its server-side database interface. The automations
are numbered; the oldest, the "big" one, gets every run, one every 5 minutes back
from now, plus the running-totals variable the flow keeps. The sizes grow in
steps: with the defaults, the rows are measured once at 1,000 automations and
1,000 runs, then again at 10,000 automations and 100,000 runs.

Two of the server's background services are off while latencies are taken. The
scheduler would add future runs for every automation, and their write load; run
history leaves future runs out anyway. The event persister's writes lock SQLite;
no measured request reads events.

Each row takes `--samples` calls to the facade and as many to Prefect,
interleaved (facade, Prefect, all calls, facade, ...) after 3 warm-up rounds,
sequentially over keep-alive connections. A latency runs from sending the
request to having read the whole body.

  facade p50/p95   the facade endpoint, in milliseconds (nearest-rank percentiles)
  Prefect p50/p95  the Prefect call the endpoint wraps for its data, with the same
                   filter, sort and limit, sent directly to Prefect
  ratio p50        facade p50 / Prefect p50
  all calls p50    every Prefect call the facade makes for that request, sent
                   directly one after another (the facade sends two of them side
                   by side); ratio: facade p50 / this
  Prefect calls    the facade's `X-Prefect-Calls` header. "(constant)" when every
                   sample made the same number; the facade keeps an API key's
                   organization for 10 s, so a request after that adds one call.

The facade lists at most 200 automations per page, so the list rows measure the
first page (and Prefect is asked for the same 200).

Schedule lag (`bench.lag`): after the latencies, a process worker and the
stand-in model start, `--scheduled` runs are scheduled over 3 minutes on automations
made through the facade, and the lag of each is its `startedAt` minus its
scheduled time. `--scheduled 0` leaves this out.
`--keep` leaves the temporary directory (and the PostgreSQL database) behind.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import platform
import random
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import httpx

from api.database import POSTGRES_URL, create_test_database, drop_database
from api.stack import WORK_POOL, Stack, StackConfig, stack_environment
from bench.clone import RUN_SPACING, clone_deployments, clone_runs
from bench.lag import Lag, measure_lag
from flows.ids import automation_id, stats_variable_name

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

BUSY_RETRIES = 30  # with the pauses below, up to about a minute
WARMUP = 3
PAGE = 200
ORGANIZATION = "default"
ORGANIZATION_TAG = f"workjet-org:{ORGANIZATION}"
TAGS = ["workjet", ORGANIZATION_TAG]
CRON = "0 9 * * 1"
SETTLE_SECONDS = 5.0
CALLS_HEADER = "X-Prefect-Calls"
SCHEDULED_TAG = "auto-scheduled"  # the tag Prefect's scheduler gives its runs
HISTORY_START = "2000-01-01T00:00:00+00:00"  # as api.history counts from
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


@dataclass
class Row:
    facade_label: str
    prefect_label: str
    size: str
    facade_ms: list[float] = field(default_factory=list)
    prefect_ms: list[float] = field(default_factory=list)
    all_ms: list[float] = field(default_factory=list)
    calls: Counter[int] = field(default_factory=Counter)


@dataclass
class Seeding:
    """What is in Prefect so far, and how long putting it there took."""

    automations: list[UUID] = field(default_factory=list)
    template_run: UUID | None = None
    runs: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def big(self) -> UUID:
        return self.automations[0]

    def timed(self, what: str, started: float) -> None:
        self.seconds[what] = self.seconds.get(what, 0.0) + time.monotonic() - started


def free_ports(count: int) -> list[int]:
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


async def _busy(call: Callable[[], Awaitable[T]]) -> T:
    """Send again when Prefect answers 503 (SQLite busy): a 503 means the
    transaction was rolled back, so the same create makes no duplicate."""
    from prefect.exceptions import PrefectHTTPStatusError

    for attempt in range(BUSY_RETRIES):
        try:
            return await call()
        except PrefectHTTPStatusError as error:
            if error.response.status_code != 503 or attempt == BUSY_RETRIES - 1:
                raise
        pause = min(0.05 * 2**attempt, 2.0)
        await asyncio.sleep(random.uniform(0.5, 1.5) * pause)
    raise AssertionError("unreachable")


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


async def _create_template_automation(client: PrefectClient) -> UUID:
    """Automation 0, made through Prefect's API as the facade makes automations."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.utilities.callables import parameter_schema

    from api.settings import Settings
    from api.template import load_template
    from flows.automation import FLOW_NAME, run_automation

    settings = Settings()
    template = load_template(settings.prefect_yaml, settings.project_dir)
    parameters = _parameters(0)
    return await _busy(
        functools.partial(
            client.create_deployment,
            flow_id=await client.create_flow_from_name(FLOW_NAME),
            name=f"{parameters['name']} [{secrets.token_hex(4)}]",
            description="Seeded by bench.benchmark.",
            parameters=parameters,
            parameter_openapi_schema=parameter_schema(
                run_automation
            ).model_dump_for_openapi(),
            schedules=[
                DeploymentScheduleCreate(
                    schedule=CronSchedule(cron=CRON, timezone="UTC"), active=True
                )
            ],
            paused=False,
            tags=TAGS,
            work_pool_name=WORK_POOL,
            entrypoint=template.entrypoint,
            pull_steps=template.pull_steps,
        )
    )


async def _create_template_run(client: PrefectClient, deployment_id: UUID) -> UUID:
    """One completed run of automation 0 with its run-record artifact, made through
    Prefect's API, and the running totals the flow keeps for the automation."""
    from flows.automation import FLOW_NAME
    from flows.record import RunRecord, artifact_payload

    run = {
        "flow_id": str(await client.create_flow_from_name(FLOW_NAME)),
        "deployment_id": str(deployment_id),
        "parameters": _parameters(0),
        "tags": [*TAGS, SCHEDULED_TAG],
        "work_pool_name": WORK_POOL,
        "state": {"type": "COMPLETED", "message": "seeded by bench.benchmark"},
    }
    created = await _busy(
        functools.partial(client.request, "POST", "/flow_runs/", json=run)
    )
    record = RunRecord(
        model=MODEL_ID,
        tokens_input=1200,
        tokens_output=350,
        estimated_cost=0.009,
        stop_reason="end_turn",
        has_output=True,
    )
    artifact = {**artifact_payload(record, OUTPUT), "flow_run_id": created.json()["id"]}
    await _busy(functools.partial(client.request, "POST", "/artifacts/", json=artifact))
    stats = {
        "lastRunAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tokensInput": 1300,
        "tokensOutput": 400,
        "estimatedCost": 0.009,
    }
    variable = {"name": stats_variable_name(deployment_id), "value": stats}
    await _busy(functools.partial(client.request, "POST", "/variables/", json=variable))
    return UUID(created.json()["id"])


async def grow(seeding: Seeding, automations: int, runs: int) -> None:
    """Seed until Prefect holds `automations` automations and the big one `runs`
    runs."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    if not seeding.automations:
        started = time.monotonic()
        with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
            async with get_client() as client:
                seeding.automations.append(await _create_template_automation(client))
                seeding.template_run = await _create_template_run(client, seeding.big)
        seeding.runs = 1
        seeding.timed("through the REST API", started)

    started = time.monotonic()
    missing = automations - len(seeding.automations)
    if missing > 0:
        seeding.automations += await clone_deployments(
            seeding.big, missing, len(seeding.automations), _parameters
        )
    seeding.timed("automations", started)

    started = time.monotonic()
    missing = runs - seeding.runs
    if missing > 0 and seeding.template_run is not None:
        newest = datetime.now(UTC) - RUN_SPACING * seeding.runs
        await clone_runs(seeding.template_run, missing, newest)
        seeding.runs = runs
    seeding.timed("runs", started)


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
    every_call: Callable[[], httpx.Response],
    check: Callable[[Any, Any], bool],
    samples: int,
) -> Row:
    for index in range(WARMUP + samples):
        facade_ms, facade_response = _timed(facade)
        prefect_ms, prefect_response = _timed(prefect)
        all_ms, _ = _timed(every_call)
        if index == 0 and not check(facade_response.json(), prefect_response.json()):
            raise RuntimeError(f"{row.facade_label}: the facade and Prefect disagree")
        if index < WARMUP:
            continue
        row.facade_ms.append(facade_ms)
        row.prefect_ms.append(prefect_ms)
        row.all_ms.append(all_ms)
        row.calls[int(facade_response.headers[CALLS_HEADER])] += 1
    return row


def _in_sequence(*calls: Callable[[], httpx.Response]) -> Callable[[], httpx.Response]:
    def send() -> httpx.Response:
        for call in calls:
            response = call()
            if response.status_code != 200:
                return response
        return response

    return send


def _runs_filter(deployment_id: UUID) -> dict[str, Any]:
    """What the facade's run history asks Prefect for (`history_filter`)."""
    return {
        "deployment_id": {"any_": [str(deployment_id)]},
        "expected_start_time": {"before_": _now()},
    }


class Endpoints:
    """The measured endpoints, each with the Prefect calls it makes."""

    def __init__(self, api: httpx.Client, prefect: httpx.Client) -> None:
        self.api = api
        self.prefect = prefect

    def listing(self, seeding: Seeding, samples: int) -> Row:
        prefect = self.prefect
        owned = {"tags": {"all_": [ORGANIZATION_TAG]}}
        body = {"deployments": owned, "sort": "CREATED_DESC", "limit": PAGE}
        newest = seeding.automations[-PAGE:]
        names = [stats_variable_name(deployment_id) for deployment_id in newest]
        stats = {"variables": {"name": {"any_": names}}, "limit": len(names)}
        size = f"{len(seeding.automations):,} automations"
        return measure(
            Row("GET /v1/automations", "POST /deployments/filter (limit 200)", size),
            lambda: self.api.get("/automations"),
            lambda: prefect.post("/deployments/filter", json=body),
            _in_sequence(
                lambda: prefect.post("/deployments/filter", json=body),
                lambda: prefect.post("/deployments/count", json={"deployments": owned}),
                lambda: prefect.post("/variables/filter", json=stats),
            ),
            lambda facade, raw: len(facade["automations"]) == len(raw),
            samples,
        )

    def one(self, seeding: Seeding, samples: int) -> Row:
        prefect, big = self.prefect, seeding.big
        stats = {"variables": {"name": {"any_": [stats_variable_name(big)]}}}

        def history() -> httpx.Response:
            now = datetime.now(UTC)
            start = datetime.fromisoformat(HISTORY_START)
            body = {
                "history_start": HISTORY_START,
                "history_end": now.isoformat(),
                "history_interval_seconds": (now - start).total_seconds() + 1,
                "flow_runs": _runs_filter(big),
            }
            return prefect.post("/flow_runs/history", json=body)

        latest = {
            "flow_runs": _runs_filter(big),
            "sort": "EXPECTED_START_TIME_DESC",
            "limit": 1,
        }
        return measure(
            Row(
                "GET /v1/automations/{id}",
                "GET /deployments/{id}",
                f"{seeding.runs:,} runs",
            ),
            lambda: self.api.get(f"/automations/{automation_id(big)}"),
            lambda: prefect.get(f"/deployments/{big}"),
            _in_sequence(
                lambda: prefect.get(f"/deployments/{big}"),
                lambda: prefect.post("/variables/filter", json=stats),
                history,
                lambda: prefect.post("/flow_runs/filter", json=latest),
            ),
            lambda facade, raw: facade["id"] == automation_id(UUID(raw["id"])),
            samples,
        )

    def runs(self, seeding: Seeding, samples: int, limit: int = 100) -> Row:
        prefect, big = self.prefect, seeding.big

        def page() -> httpx.Response:
            body = {
                "flow_runs": _runs_filter(big),
                "sort": "EXPECTED_START_TIME_DESC",
                "limit": limit,
            }
            return prefect.post("/flow_runs/filter", json=body)

        def records() -> httpx.Response:
            ids = [flow_run["id"] for flow_run in page().json()]
            body = {
                "artifacts": {
                    "flow_run_id": {"any_": ids},
                    "type": {"any_": ["markdown"]},
                },
                "limit": min(2 * len(ids), 200),
            }
            return prefect.post("/artifacts/filter", json=body)

        return measure(
            Row(
                f"GET /v1/automations/{{id}}/runs?limit={limit}",
                f"POST /flow_runs/filter (limit {limit})",
                f"{seeding.runs:,} runs",
            ),
            lambda: self.api.get(
                f"/automations/{automation_id(big)}/runs", params={"limit": limit}
            ),
            page,
            _in_sequence(
                lambda: prefect.get(f"/deployments/{big}"),
                lambda: prefect.post(
                    "/flow_runs/count", json={"flow_runs": _runs_filter(big)}
                ),
                records,  # the page of runs, then their artifacts
            ),
            lambda facade, raw: len(facade["runs"]) == len(raw),
            samples,
        )


# ---- report --------------------------------------------------------------------


def _calls(counts: Counter[int]) -> str:
    if len(counts) == 1:
        return f"{next(iter(counts))} (constant)"
    return ", ".join(f"{calls} ({times}×)" for calls, times in sorted(counts.items()))


def latency_table(rows: list[Row]) -> list[str]:
    lines = [
        "| Facade endpoint | size | facade p50 | facade p95 | Prefect call it wraps"
        " | Prefect p50 | Prefect p95 | ratio p50 | all its calls p50 | ratio"
        " | Prefect calls per request |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        facade = _percentile(row.facade_ms, 0.5)
        prefect = _percentile(row.prefect_ms, 0.5)
        every = _percentile(row.all_ms, 0.5)
        lines.append(
            f"| `{row.facade_label}` | {row.size} | {facade:.1f}"
            f" | {_percentile(row.facade_ms, 0.95):.1f} | `{row.prefect_label}`"
            f" | {prefect:.1f} | {_percentile(row.prefect_ms, 0.95):.1f}"
            f" | {facade / prefect:.1f}× | {every:.1f} | {facade / every:.1f}×"
            f" | {_calls(row.calls)} |"
        )
    return lines


def lag_lines(lag: Lag) -> list[str]:
    statuses = ", ".join(f"{count} {name}" for name, count in lag.statuses.items())
    return [
        "",
        f"Schedule lag: {len(lag.seconds)} scheduled runs, {lag.automations}"
        f" automations firing together each minute for {lag.minutes} minutes, one"
        f" process worker ({statuses}).",
        "",
        "| schedule lag (startedAt - scheduled time) | p50 | p95 | max |",
        "|---|---:|---:|---:|",
        f"| seconds | {_percentile(lag.seconds, 0.5):.1f}"
        f" | {_percentile(lag.seconds, 0.95):.1f} | {max(lag.seconds):.1f} |",
    ]


def report(
    database: str,
    rows: list[Row],
    lag: Lag | None,
    seeding: Seeding,
    samples: int,
    loads: list[float],
) -> str:
    seeded = ", ".join(
        f"{what} {seconds:.0f} s" for what, seconds in seeding.seconds.items()
    )
    lines = [
        f"Database: {database}. Seeding: {seeded} (copies of rows written by"
        " Prefect's API, see bench/clone.py).",
        f"{samples} samples per row after {WARMUP} warm-ups; latencies in ms; the"
        f" list rows read the first page ({PAGE}); the other rows read the big"
        " automation, which holds every run.",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}; 1-minute load"
        f" average while measuring: {', '.join(f'{load:.1f}' for load in loads)}"
        " (every process on the machine counts).",
        "",
        *latency_table(rows),
    ]
    if lag is not None:
        lines += lag_lines(lag)
    return "\n".join(lines)


# ---- command -------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",")]
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError("sizes must be >= 1")
    return sizes


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--database", choices=["sqlite", "postgresql"], default="sqlite"
    )
    parser.add_argument("--automations", type=_sizes, default=[1000, 10_000])
    parser.add_argument("--runs", type=_sizes, default=[1000, 100_000])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--scheduled", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data")
    args = parser.parse_args(argv)
    if len(args.automations) != len(args.runs):
        parser.error("--automations and --runs need as many sizes each")
    if args.samples < 1 or args.scheduled < 0:
        parser.error("--samples must be >= 1, --scheduled >= 0")
    return args


def _config(args: argparse.Namespace, home: Path) -> StackConfig:
    database_url = None
    if args.database == "postgresql":
        server = os.environ.get("WORKJET_BENCH_POSTGRES_URL", POSTGRES_URL)
        database_url = create_test_database(server, prefix="workjet_bench_")
    api_port, prefect_port, standin_port = free_ports(3)
    return StackConfig(
        home=home,
        api_port=api_port,
        prefect_port=prefect_port,
        standin_port=standin_port,
        database_url=database_url,
        extra_env={
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
        },
    )


def run(args: argparse.Namespace, config: StackConfig) -> str:
    stack = Stack(config)
    seeding = Seeding()
    rows: list[Row] = []
    loads: list[float] = []
    lag = None
    try:
        print("Starting Prefect...", file=sys.stderr, flush=True)
        stack.start_prefect()
        api_key = asyncio.run(prepare())
        stack.start_api()
        headers = {"Authorization": f"Bearer {api_key}"}
        with (
            httpx.Client(base_url=config.api_url, headers=headers, timeout=60) as api,
            httpx.Client(base_url=config.prefect_api_url, timeout=60) as prefect,
            asyncio.Runner() as runner,
        ):
            endpoints = Endpoints(api, prefect)
            for automations, runs in zip(args.automations, args.runs, strict=True):
                print(
                    f"Seeding to {automations:,} automations, {runs:,} runs...",
                    file=sys.stderr,
                    flush=True,
                )
                runner.run(grow(seeding, automations, runs))
                time.sleep(SETTLE_SECONDS)
                print("Measuring...", file=sys.stderr, flush=True)
                loads.append(os.getloadavg()[0])
                rows.append(endpoints.listing(seeding, args.samples))
                rows.append(endpoints.one(seeding, args.samples))
                rows.append(endpoints.runs(seeding, args.samples))
                loads.append(os.getloadavg()[0])
            if args.scheduled:
                print("Measuring schedule lag...", file=sys.stderr, flush=True)
                stack.start_standin()
                stack.start_worker()
                lag = measure_lag(api, prefect, args.scheduled)
    finally:
        stack.stop()
    return report(args.database, rows, lag, seeding, args.samples, loads)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    home = Path(tempfile.mkdtemp(prefix="workjet-bench-"))
    config = _config(args, home)
    # Prefect reads its settings when it is first imported: point this process at
    # the benchmark's own server and database before anything imports Prefect.
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
    try:
        table = run(args, config)
    finally:
        if args.keep:
            print(f"Kept {home} {config.database_url or ''}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)
            if config.database_url:
                drop_database(config.database_url)
    print(table)
    print(f"\nWhole run: {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
