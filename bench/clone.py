"""Fast seeding: copies of rows that Prefect's own API wrote, inserted in bulk.

Creating 10,000 deployments and 100,000 flow runs one request at a time takes
most of an hour on a 2-core machine (a deployment costs ~70 ms, a run with its
artifact ~80 ms). Here the benchmark makes one deployment, and one completed run
with its run-record artifact, through Prefect's REST API as before; then it reads
those rows back through Prefect's server-side database interface (its ORM tables,
on the connection URL the server itself uses) and inserts copies that differ only
in what must differ: ids, names, the automation's name parameter, times. What
Prefect later reads is therefore exactly what its API writes, in its own tables,
on either SQLite or PostgreSQL.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import sqlalchemy as sa

BATCH = 2000
RUN_SPACING = timedelta(minutes=5)
RUN_SECONDS = 8


def _table(model: Any) -> sa.Table:
    return cast(sa.Table, model.__table__)


async def _rows(table: sa.Table, where: Any) -> list[dict[str, Any]]:
    from prefect.server.database import provide_database_interface

    db = provide_database_interface()
    async with db.session_context() as session:
        result = await session.execute(sa.select(table).where(where))
        return [dict(row) for row in result.mappings()]


async def _insert(table: sa.Table, rows: list[dict[str, Any]]) -> None:
    from prefect.server.database import provide_database_interface

    db = provide_database_interface()
    for start in range(0, len(rows), BATCH):
        async with db.session_context(begin_transaction=True) as session:
            await session.execute(sa.insert(table), rows[start : start + BATCH])


async def clone_deployments(
    template: UUID, count: int, first_index: int, parameters: Callable[[int], Any]
) -> list[UUID]:
    """`count` copies of the deployment `template` (with its schedules), numbered
    from `first_index`; their ids in that order."""
    from prefect.server.database import provide_database_interface

    db = provide_database_interface()
    deployments = _table(db.Deployment)
    schedules = _table(db.DeploymentSchedule)
    [original] = await _rows(deployments, deployments.c.id == template)
    original_schedules = await _rows(schedules, schedules.c.deployment_id == template)

    now = datetime.now(UTC)
    new_deployments, new_schedules, ids = [], [], []
    for offset in range(count):
        index = first_index + offset
        new_id = uuid.uuid4()
        made = now + timedelta(microseconds=offset)
        params = parameters(index)
        new_deployments.append(
            {
                **original,
                "id": new_id,
                "name": f"{params['name']} [{secrets.token_hex(4)}]",
                "parameters": params,
                "created": made,
                "updated": made,
            }
        )
        for schedule in original_schedules:
            new_schedules.append(
                {
                    **schedule,
                    "id": uuid.uuid4(),
                    "deployment_id": new_id,
                    "created": made,
                    "updated": made,
                }
            )
        ids.append(new_id)

    await _insert(deployments, new_deployments)
    await _insert(schedules, new_schedules)
    return ids


async def clone_runs(template: UUID, count: int, newest: datetime) -> None:
    """`count` copies of the completed flow run `template`, its final state and its
    artifacts, one every `RUN_SPACING` back from `newest`."""
    from prefect.server.database import provide_database_interface

    db = provide_database_interface()
    runs = _table(db.FlowRun)
    states = _table(db.FlowRunState)
    artifacts = _table(db.Artifact)
    [run] = await _rows(runs, runs.c.id == template)
    [state] = await _rows(states, states.c.id == run["state_id"])
    run_artifacts = await _rows(artifacts, artifacts.c.flow_run_id == template)

    new_runs, new_states, new_artifacts = [], [], []
    for number in range(count):
        run_id, state_id = uuid.uuid4(), uuid.uuid4()
        expected = newest - RUN_SPACING * number
        ended = expected + timedelta(seconds=RUN_SECONDS)
        new_runs.append(
            {
                **run,
                "id": run_id,
                "name": f"seeded-{run_id.hex[:12]}",
                "state_id": None,
                "state_timestamp": ended,
                "expected_start_time": expected,
                "next_scheduled_start_time": expected,
                "start_time": expected,
                "end_time": ended,
                "total_run_time": timedelta(seconds=RUN_SECONDS),
                "run_count": 1,
                "created": expected,
                "updated": ended,
            }
        )
        new_states.append(
            {
                **state,
                "id": state_id,
                "flow_run_id": run_id,
                "timestamp": ended,
                "created": ended,
                "updated": ended,
            }
        )
        for artifact in run_artifacts:
            new_artifacts.append(
                {
                    **artifact,
                    "id": uuid.uuid4(),
                    "flow_run_id": run_id,
                    "created": ended,
                    "updated": ended,
                }
            )

    # A run names its state and the state its run: each batch inserts the runs
    # without a state, then their states, then points the runs at them.
    for start in range(0, count, BATCH):
        end = start + BATCH
        async with db.session_context(begin_transaction=True) as session:
            await session.execute(sa.insert(runs), new_runs[start:end])
            await session.execute(sa.insert(states), new_states[start:end])
            batch = [row["id"] for row in new_runs[start:end]]
            await session.execute(
                sa.update(runs)
                .where(runs.c.id.in_(batch), states.c.flow_run_id == runs.c.id)
                .values(state_id=states.c.id)
            )
    await _insert(artifacts, new_artifacts)
