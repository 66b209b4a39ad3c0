"""Catch-up after downtime: what a scheduled run does when it starts long after
its fire time, because the worker or the server was down.

Prefect keeps the scheduled runs it made in advance, so when a worker comes back
every missed run is due at once. Each decides for itself, from its own fire time
and the automation's schedule (the computation behind `nextRunAt`):

- `all`: every missed run runs, oldest first;
- `latest`: a run whose next fire time has also passed is skipped, so only the
  most recent missed one runs;
- `none`: a run that starts more than the grace period after its fire time is
  skipped.

Skipped runs are recorded with the reason, and count neither as failures nor
successes. Runs made by a backfill are never skipped: they are meant to be late.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client

from api.schedules import next_fire_time
from flows.agent import AgentError
from flows.alerts import SKIPPED_PREFIX
from flows.guardrails import CatchUp, Guardrails
from flows.triggers import trigger_of

BACKFILL_TAG = "workjet-backfill"
GRACE_VARIABLE = "WORKJET_CATCH_UP_GRACE_SECONDS"
DEFAULT_GRACE_SECONDS = 120.0


class MissedRunSkippedError(AgentError):
    """A scheduled run missed during downtime that its catch-up mode skips."""


def grace() -> timedelta:
    return timedelta(
        seconds=float(os.environ.get(GRACE_VARIABLE, DEFAULT_GRACE_SECONDS))
    )


def catch_up_verdict(
    mode: CatchUp,
    fired_at: datetime,
    now: datetime,
    next_fire: datetime | None,
    late_after: timedelta,
) -> str | None:
    """Why the run is skipped, or None when it runs."""
    if mode == "all":
        return None
    if mode == "latest":
        if next_fire is not None and next_fire <= now:
            return (
                f"{SKIPPED_PREFIX}missed its fire time; a later one has passed"
                " (catchUp latest)"
            )
        return None
    if now - fired_at > late_after:
        return f"{SKIPPED_PREFIX}missed its fire time (catchUp none)"
    return None


async def skip_when_missed(
    flow_run: Any, deployment_id: UUID, guardrails: Guardrails | None
) -> None:
    """Raise for a scheduled run that its catch-up mode skips."""
    tags = flow_run.tags or []
    fired_at = flow_run.expected_start_time
    if trigger_of(tags) != "schedule" or BACKFILL_TAG in tags or fired_at is None:
        return
    now = datetime.now(UTC)
    if now - fired_at < timedelta(seconds=1):
        return  # on time: no schedule to read

    mode: CatchUp = (guardrails.catch_up if guardrails else None) or "latest"
    async with get_client() as client:
        deployment = await client.read_deployment(deployment_id)
    cron, zone = "", "UTC"
    for deployment_schedule in deployment.schedules:
        cron = str(getattr(deployment_schedule.schedule, "cron", "") or "")
        zone = str(getattr(deployment_schedule.schedule, "timezone", None) or zone)
    if not cron:
        return

    after = fired_at + timedelta(seconds=1)
    verdict = catch_up_verdict(
        mode, fired_at, now, next_fire_time(cron, zone, after=after), grace()
    )
    if verdict is not None:
        raise MissedRunSkippedError(verdict)
