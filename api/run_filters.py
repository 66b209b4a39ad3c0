"""Which flow runs are an automation's run history, and how history is filtered.

History is the deployment's runs that are due: a run the scheduler created for a
future time is a promise, not history. A run's trigger is read from its tags:
Prefect's scheduler tags its runs `auto-scheduled`, and the API and the flow tag the
others `workjet-trigger:manual` or `workjet-trigger:replay`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)

from api.mapping import RUN_STATE_TYPES
from flows.triggers import MANUAL_TAG, REPLAY_TAG, SCHEDULED_TAG

Trigger = Literal["schedule", "manual", "replay"]
TRIGGER_TAGS: dict[str, str] = {
    "schedule": SCHEDULED_TAG,
    "manual": MANUAL_TAG,
    "replay": REPLAY_TAG,
}


@dataclass(frozen=True)
class RunQuery:
    status: str | None = None
    trigger: str | None = None
    started_from: datetime | None = None
    started_to: datetime | None = None


def history_filter(
    deployment_id: UUID, query: RunQuery, now: datetime
) -> FlowRunFilter:
    state = None
    if query.status is not None:
        state = FlowRunFilterState(
            type=FlowRunFilterStateType(any_=RUN_STATE_TYPES[query.status])
        )

    tags = None
    if query.trigger is not None:
        tags = FlowRunFilterTags(all_=[TRIGGER_TAGS[query.trigger]])

    start_time = None
    if query.started_from is not None or query.started_to is not None:
        # Prefect's `before_` includes its bound; `to` excludes it.
        before = (
            query.started_to - timedelta(microseconds=1) if query.started_to else None
        )
        start_time = FlowRunFilterStartTime(
            after_=query.started_from,  # type: ignore[arg-type]
            before_=before,  # type: ignore[arg-type]
        )

    return FlowRunFilter(
        deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
        expected_start_time=FlowRunFilterExpectedStartTime(
            before_=now  # type: ignore[arg-type]  # Prefect's alias of datetime
        ),
        state=state,
        tags=tags,
        start_time=start_time,
    )
