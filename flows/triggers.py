"""Tags that say what started a run, shared by the flow and the API."""

from __future__ import annotations

SCHEDULED_TAG = "auto-scheduled"  # Prefect's scheduler adds this one itself
MANUAL_TAG = "workjet-trigger:manual"
REPLAY_TAG = "workjet-trigger:replay"
REPLAY_OF_PREFIX = "workjet-replay-of:"


def trigger_of(tags: list[str]) -> str:
    if SCHEDULED_TAG in tags:
        return "schedule"
    if REPLAY_TAG in tags:
        return "replay"
    return "manual"


def replay_of(tags: list[str]) -> str | None:
    for tag in tags:
        if tag.startswith(REPLAY_OF_PREFIX):
            return tag.removeprefix(REPLAY_OF_PREFIX)
    return None


def untagged(tags: list[str]) -> bool:
    """A run started outside the API (Prefect UI or CLI) carries no trigger tag yet."""
    return not {SCHEDULED_TAG, MANUAL_TAG, REPLAY_TAG} & set(tags)
