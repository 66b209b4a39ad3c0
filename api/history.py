"""An automation's run history in Prefect: counts, running totals, removal.

Counts by status come from Prefect itself; token and cost totals from the variable
each run of the flow adds itself to. Removal deletes runs 50 at a time, as Prefect
allows, with the artifacts that hold their output.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Cancelling

from api.mapping import run_out, run_status
from api.run_filters import RunQuery, history_filter
from api.schemas import RunOut, RunSummary
from flows.budget import org_budget_variable, org_spend_variable
from flows.ids import stats_variable_name

# Earlier than any run: the start of the single bucket that counts all history.
HISTORY_START = datetime(2000, 1, 1, tzinfo=UTC)
ACTIVE_STATES = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]


def _now() -> datetime:
    return datetime.now(UTC)


def _runs_filter(deployment_id: UUID, status: str | None = None) -> FlowRunFilter:
    return history_filter(deployment_id, RunQuery(status=status), _now())


@dataclass(frozen=True)
class RunCounts:
    total: int
    success: int
    failure: int
    last: RunOut | None


def summary(counts: RunCounts, stats: dict[str, Any]) -> RunSummary:
    last = counts.last
    return RunSummary(
        total=counts.total,
        success=counts.success,
        failure=counts.failure,
        running=max(counts.total - counts.success - counts.failure, 0),
        last_run_at=stats.get("lastRunAt") or (last.started_at if last else None),
        last_status=last.status if last else None,
        tokens_input=int(stats.get("tokensInput", 0)),
        tokens_output=int(stats.get("tokensOutput", 0)),
        estimated_cost=float(stats.get("estimatedCost", 0.0)),
    )


class RunHistory:
    def __init__(self, client: PrefectClient) -> None:
        self.client = client

    async def read_stats(
        self, deployment_ids: list[UUID]
    ) -> dict[UUID, dict[str, Any]]:
        """Running totals the flow keeps per automation, in one Prefect call."""
        if not deployment_ids:
            return {}

        names = {stats_variable_name(i): i for i in deployment_ids}
        response = await self.client.request(
            "POST",
            "/variables/filter",
            json={"variables": {"name": {"any_": list(names)}}, "limit": len(names)},
        )
        return {
            names[item["name"]]: item["value"]
            for item in response.json()
            if isinstance(item.get("value"), dict)
        }

    async def read_variables(self, names: list[str]) -> dict[str, Any]:
        """The values of the named Prefect variables that exist, in one call."""
        response = await self.client.request(
            "POST",
            "/variables/filter",
            json={"variables": {"name": {"any_": names}}, "limit": len(names)},
        )
        return {item["name"]: item.get("value") for item in response.json()}

    async def read_guardrail_state(
        self, deployment_id: UUID, organization: str
    ) -> tuple[dict[str, Any], Any, Any]:
        """The automation's stats, its organization's budget and spend, in one call."""
        names = [
            stats_variable_name(deployment_id),
            org_budget_variable(organization),
            org_spend_variable(organization),
        ]
        values = await self.read_variables(names)
        stats = values.get(names[0])
        return (
            dict(stats) if isinstance(stats, dict) else {},
            values.get(names[1]),
            values.get(names[2]),
        )

    async def update_stats(self, deployment_id: UUID, changes: dict[str, Any]) -> None:
        """Set keys of the automation's stats variable; a None value removes one."""
        name = stats_variable_name(deployment_id)
        variable = await self.client.read_variable_by_name(name)
        current = variable.value if variable is not None else None
        stats: dict[str, Any] = dict(current) if isinstance(current, dict) else {}

        for key, value in changes.items():
            if value is None:
                stats.pop(key, None)
            else:
                stats[key] = value
        if variable is None:
            try:
                await self.client.create_variable(
                    VariableCreate(name=name, value=stats)
                )
                return
            except ObjectAlreadyExists:
                pass  # a run created it meanwhile: update it below
        await self.client.update_variable(VariableUpdate(name=name, value=stats))

    async def delete_stats(self, deployment_id: UUID) -> None:
        with contextlib.suppress(ObjectNotFound):
            await self.client.delete_variable_by_name(
                stats_variable_name(deployment_id)
            )

    async def count_runs(self, deployment_id: UUID) -> RunCounts:
        """The history counts by status and the latest run, read side by side."""
        by_state, latest = await asyncio.gather(
            self.count_by_state(deployment_id),
            self.client.read_flow_runs(
                flow_run_filter=_runs_filter(deployment_id),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=1,
            ),
        )
        by_status: dict[str, int] = {}
        for state_type, count in by_state.items():
            status = run_status(StateType(state_type))
            by_status[status] = by_status.get(status, 0) + count

        last = run_out(latest[0], None) if latest else None
        return RunCounts(
            total=sum(by_status.values()),
            success=by_status.get("success", 0),
            failure=by_status.get("failure", 0),
            last=last,
        )

    async def count_by_state(self, deployment_id: UUID) -> dict[str, int]:
        """Run counts per Prefect state type in one call.

        Prefect's run history groups runs by state within time buckets; one bucket
        spanning all of history gives every count at once, where counting each
        status would take a call apiece.
        """
        now = _now()
        history = _runs_filter(deployment_id)
        response = await self.client.request(
            "POST",
            "/flow_runs/history",
            json={
                "history_start": HISTORY_START.isoformat(),
                "history_end": now.isoformat(),
                "history_interval_seconds": (now - HISTORY_START).total_seconds() + 1,
                "flow_runs": history.model_dump(mode="json", exclude_unset=True),
            },
        )
        counts: dict[str, int] = {}
        for bucket in response.json():
            for state in bucket.get("states", []):
                kind = str(state["state_type"])
                counts[kind] = counts.get(kind, 0) + int(state["count_runs"])
        return counts

    async def cancel_active_runs(self, deployment_id: UUID) -> None:
        active = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=ACTIVE_STATES)
                ),
            ),
            limit=200,
        )
        for flow_run in active:
            await self.client.set_flow_run_state(
                flow_run.id, Cancelling(message="automation deleted"), force=True
            )

    async def delete_runs(self, deployment_id: UUID) -> None:
        """Delete the runs, 50 at a time as Prefect allows, and their artifacts.

        Prefect keeps a deleted run's artifacts, and those hold the run's output.
        """
        every_run = {"deployment_id": {"any_": [str(deployment_id)]}}
        while True:
            # The client's route list predates bulk delete; its httpx client does not.
            response = await self.client._client.post(
                "/flow_runs/bulk_delete", json={"flow_runs": every_run}
            )
            response.raise_for_status()
            deleted = [UUID(i) for i in response.json().get("deleted", [])]
            if not deleted:
                return
            await self.delete_artifacts(deleted)

    async def delete_artifacts(self, flow_run_ids: list[UUID]) -> None:
        artifacts = await self.client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=flow_run_ids)
            ),
            limit=200,
        )
        for artifact in artifacts:
            with contextlib.suppress(ObjectNotFound):
                await self.client.delete_artifact(artifact.id)
