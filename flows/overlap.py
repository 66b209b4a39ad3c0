"""Overlap: a scheduled run that fell due while the run before it was running.

Under `skip` and `queue` the deployment's concurrency limit of one makes every
run wait for the one before it. Under `skip` a scheduled run that waited so, one
whose fire time came while an earlier run was still going, then ends at once as
skipped. Manual runs, replays and backfills always run: somebody asked for them.
A run that starts late for another reason (the worker was down) is left to the
catch-up rules, since no earlier run was running at its fire time.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterStartTime,
)
from prefect.client.schemas.sorting import FlowRunSort

from flows.agent import AgentError
from flows.catchup import BACKFILL_TAG
from flows.outcomes import SKIPPED_ERROR
from flows.triggers import trigger_of

OverlapPolicy = Literal["skip", "queue", "allow"]


class OverlapSkippedError(AgentError):
    """A scheduled run due while the previous run was still going, under `skip`."""


async def skip_when_overlapping(
    flow_run: Any, deployment_id: UUID, policy: OverlapPolicy
) -> None:
    """Raise for a scheduled run that overlapped the run before it."""
    tags = flow_run.tags or []
    fired_at = flow_run.expected_start_time
    if policy != "skip" or trigger_of(tags) != "schedule" or BACKFILL_TAG in tags:
        return
    if fired_at is None:
        return

    async with get_client() as client:
        earlier = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[deployment_id])
            ),
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(not_any_=[flow_run.id]),
                # Started for real: Prefect's time filter falls back to the expected
                # start of runs that have not started yet.
                start_time=FlowRunFilterStartTime(before_=fired_at, is_null_=False),
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )

    # The latest run that started before this one's fire time: still going then?
    if earlier and (earlier[0].end_time is None or earlier[0].end_time > fired_at):
        raise OverlapSkippedError(SKIPPED_ERROR)
