"""Backfill: runs for an automation's past fire times, from the same schedule
computation as `nextRunAt`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from api.schedules import next_fire_times

MAX_BACKFILL_RUNS = 100


class BackfillIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    start: str = Field(
        alias="from", description="The first fire time at or after this (RFC 3339)."
    )
    end: str = Field(alias="to", description="Fire times before this (RFC 3339).")


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class BackfillRun(_Out):
    run_id: str
    fires_at: str = Field(description="The fire time the run stands for, UTC.")


class BackfillOut(_Out):
    automation_id: str
    runs: list[BackfillRun] = Field(description="The runs created, oldest first.")
    existing: int = Field(
        description="Fire times in the range that already had a run, left alone."
    )


def fire_times_between(
    cron: str, zone: str, start: datetime, end: datetime, limit: int
) -> list[datetime]:
    """Fire times in [start, end), at most `limit` of them, ascending."""
    if end <= start:
        return []
    found = next_fire_times(cron, zone, after=start, count=limit)
    return [moment for moment in found if moment < end]
