"""Runs of an automation on Prefect: start, list, read, cancel, replay, logs.

A run is a flow run of the automation's deployment; its record is the markdown
artifact the flow writes. Every method makes a fixed number of Prefect calls.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterExpectedStartTime,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import Artifact, FlowRun, State, StateType
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.sorting import FlowRunSort, LogSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Cancelling, Scheduled

from api.backfill import (
    MAX_BACKFILL_RUNS,
    BackfillOut,
    BackfillRun,
    fire_times_between,
)
from api.errors import ConflictError, InvalidRequestError, NotFoundError, quoted_id
from api.mapping import run_out, run_status, schedule_of
from api.prefect_calls import prefect_boundary
from api.run_filters import RunQuery, history_filter
from api.schemas import LogLine, ManualRunOut, RunList, RunLogs, RunOut
from api.service import AutomationService
from flows.catchup import BACKFILL_TAG
from flows.ids import flow_run_id_of, run_id
from flows.record import ARTIFACT_TYPE, timestamp
from flows.triggers import MANUAL_TAG, REPLAY_OF_PREFIX, REPLAY_TAG, SCHEDULED_TAG

logger = logging.getLogger(__name__)

# Not yet handed to a worker. A PENDING run is already being started by one, so it
# must be stopped through the worker like a running one.
QUEUED_STATES = {StateType.SCHEDULED, StateType.PAUSED}
PREFECT_PAGE_MAX = 200
LEVEL_NAMES = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}


def _now() -> datetime:
    return datetime.now(UTC)


class RunService:
    def __init__(self, client: PrefectClient, automations: AutomationService) -> None:
        self.client = client
        self.automations = automations

    @prefect_boundary
    async def start(
        self, organization: str, public_id: str, replay: str | None = None
    ) -> ManualRunOut:
        """A manual run now, or a replay of an earlier run with today's config."""
        deployment = await self.automations.read_owned(organization, public_id)
        await self.automations.check_budget(organization, deployment)
        tags = [MANUAL_TAG]
        if replay is not None:
            await self._read_owned_run(deployment, replay)
            tags = [REPLAY_TAG, f"{REPLAY_OF_PREFIX}{replay}"]

        flow_run = await self.client.create_flow_run_from_deployment(
            deployment.id, tags=tags
        )
        logger.info(
            "run requested automation=%s run=%s trigger=%s",
            public_id,
            run_id(flow_run.id),
            "replay" if replay else "manual",
        )
        return ManualRunOut(
            run_id=run_id(flow_run.id),
            automation_id=public_id,
            status="running",
            started_at=timestamp(flow_run.expected_start_time or _now()) or "",
            replay_of=replay,
        )

    @prefect_boundary
    async def backfill(
        self, organization: str, public_id: str, start: datetime, end: datetime
    ) -> BackfillOut:
        """Runs for the past fire times in [start, end) that have none yet.

        They are scheduled at their fire times, which have passed, so a worker
        starts them at once, oldest first; catch-up never skips them.
        """
        deployment = await self.automations.read_owned(organization, public_id)
        cron, zone, _ = schedule_of(deployment)
        moments = fire_times_between(
            cron, zone, start, min(end, _now()), MAX_BACKFILL_RUNS + 1
        )
        if len(moments) > MAX_BACKFILL_RUNS:
            raise InvalidRequestError(
                f"to: the range holds more than {MAX_BACKFILL_RUNS} fire times;"
                " backfill a shorter range.",
                param="to",
            )
        await self.automations.check_budget(organization, deployment)

        taken = await self._fire_times_with_runs(deployment.id, moments)
        created: list[BackfillRun] = []
        for moment in moments:
            if moment in taken:
                continue
            flow_run = await self.client.create_flow_run_from_deployment(
                deployment.id,
                state=Scheduled(scheduled_time=moment),
                tags=[SCHEDULED_TAG, BACKFILL_TAG],
                idempotency_key=f"backfill {deployment.id} {moment.isoformat()}",
            )
            created.append(
                BackfillRun(
                    run_id=run_id(flow_run.id), fires_at=timestamp(moment) or ""
                )
            )
        logger.info("backfill requested automation=%s runs=%d", public_id, len(created))
        return BackfillOut(
            automation_id=public_id, runs=created, existing=len(moments) - len(created)
        )

    async def _fire_times_with_runs(
        self, deployment_id: UUID, moments: list[datetime]
    ) -> set[datetime]:
        if not moments:
            return set()
        existing = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
                expected_start_time=FlowRunFilterExpectedStartTime(
                    after_=moments[0],  # type: ignore[arg-type]
                    before_=moments[-1],  # type: ignore[arg-type]
                ),
            ),
            limit=PREFECT_PAGE_MAX,
        )
        return {
            run.expected_start_time.astimezone(UTC)
            for run in existing
            if run.expected_start_time is not None
        }

    @prefect_boundary
    async def list_runs(
        self,
        organization: str,
        public_id: str,
        limit: int,
        offset: int,
        query: RunQuery,
    ) -> RunList:
        deployment = await self.automations.read_owned(organization, public_id)
        history = history_filter(deployment.id, query, _now())

        total = await self.client.count_flow_runs(flow_run_filter=history)
        flow_runs = await self.client.read_flow_runs(
            flow_run_filter=history,
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
            offset=offset,
        )
        records = await self._read_records([run.id for run in flow_runs])
        return RunList(
            runs=[run_out(run, records.get(run.id)) for run in flow_runs],
            total=total,
        )

    @prefect_boundary
    async def read(self, organization: str, public_id: str, run: str) -> RunOut:
        deployment = await self.automations.read_owned(organization, public_id)
        flow_run = await self._read_owned_run(deployment, run)

        records = await self._read_records([flow_run.id])
        return run_out(flow_run, records.get(flow_run.id))

    @prefect_boundary
    async def cancel(self, organization: str, public_id: str, run: str) -> RunOut:
        deployment = await self.automations.read_owned(organization, public_id)
        flow_run = await self._read_owned_run(deployment, run)
        state = flow_run.state.type if flow_run.state else None

        if run_status(state) != "running":
            raise ConflictError(
                f"Run '{run}' has already finished; only a queued or running run can"
                " be cancelled.",
                code="run_finished",
            )

        # A queued run has no process yet: it ends at once. A running one is asked
        # to stop, and its worker ends the process and marks it cancelled.
        proposed: State[Any]
        if state in QUEUED_STATES:
            proposed = Cancelled(message="cancelled through the API")
        else:
            proposed = Cancelling(message="cancelled through the API")
        await self.client.set_flow_run_state(flow_run.id, proposed, force=True)
        logger.info("run cancel requested automation=%s run=%s", public_id, run)

        cancelled = await self.client.read_flow_run(flow_run.id)
        return run_out(cancelled, None)

    @prefect_boundary
    async def logs(
        self, organization: str, public_id: str, run: str, limit: int, offset: int
    ) -> RunLogs:
        deployment = await self.automations.read_owned(organization, public_id)
        flow_run = await self._read_owned_run(deployment, run)

        # One line past the page tells whether another page exists without
        # counting; Prefect serves at most 200 lines a call, so at the largest page
        # that one line is asked for on its own.
        of_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
        lines = await self.client.read_logs(
            log_filter=of_run,
            limit=min(limit + 1, PREFECT_PAGE_MAX),
            offset=offset,
            sort=LogSort.TIMESTAMP_ASC,
        )
        if limit == PREFECT_PAGE_MAX and len(lines) == limit:
            lines += await self.client.read_logs(
                log_filter=of_run,
                limit=1,
                offset=offset + limit,
                sort=LogSort.TIMESTAMP_ASC,
            )
        return RunLogs(
            logs=[
                LogLine(
                    time=timestamp(line.timestamp) or "",
                    level=LEVEL_NAMES.get(line.level, str(line.level)),
                    message=line.message,
                )
                for line in lines[:limit]
            ],
            has_more=len(lines) > limit,
        )

    async def _read_owned_run(
        self, deployment: DeploymentResponse, public_run_id: str
    ) -> FlowRun:
        missing = NotFoundError(
            f"No run {quoted_id(public_run_id)} in this automation.", param="runId"
        )
        flow_run_id = flow_run_id_of(public_run_id)
        if flow_run_id is None:
            raise missing

        try:
            flow_run = await self.client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            raise missing from None

        # A run scheduled for the future is not history yet.
        due = (
            flow_run.expected_start_time is None
            or flow_run.expected_start_time <= _now()
        )
        if flow_run.deployment_id != deployment.id or not due:
            raise missing
        return flow_run

    async def _read_records(self, flow_run_ids: list[UUID]) -> dict[UUID, Artifact]:
        if not flow_run_ids:
            return {}

        artifacts = await self.client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=flow_run_ids),
                type=ArtifactFilterType(any_=[ARTIFACT_TYPE]),
            ),
            limit=min(len(flow_run_ids) * 2, 200),
        )
        return {a.flow_run_id: a for a in artifacts if a.flow_run_id is not None}
