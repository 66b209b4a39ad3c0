"""Examples for the OpenAPI document, in the reference's own words where it has them."""

from __future__ import annotations

from typing import Any

AUTOMATION_ID = "auto_3f2a9c1e5b7d4e0f8a6b2c4d1e3f5a7b"
RUN_ID = "run_9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"

CREATE_BODY: dict[str, Any] = {
    "name": "Daily Documentation Scan",
    "description": "Check documentation for accuracy and flag outdated sections",
    "systemPrompt": "Review the documentation files and identify any sections that are"
    " outdated, inaccurate, or missing. Report findings as a bullet list.",
    "model": "premium",
    "schedule": "0 8 * * 1-5",
    "timezone": "America/Los_Angeles",
    "channels": [{"type": "slack", "channel": "#docs-team"}],
}

AUTOMATION: dict[str, Any] = {
    "id": AUTOMATION_ID,
    **{k: v for k, v in CREATE_BODY.items() if k != "channels"},
    "status": "active",
    "tools": [],
    "channels": [
        {
            "type": "slack",
            "channel": "#docs-team",
            "to": None,
            "subject": None,
            "url": None,
            "secretSet": None,
        }
    ],
    "lastRunAt": "2026-04-14T15:00:02Z",
    "nextRunAt": "2026-04-15T15:00:00Z",
    "createdAt": "2026-03-01T10:00:00Z",
    "updatedAt": "2026-03-01T10:00:00Z",
    "runs": None,
}

RUN: dict[str, Any] = {
    "id": RUN_ID,
    "automationId": AUTOMATION_ID,
    "status": "success",
    "trigger": "schedule",
    "startedAt": "2026-04-14T13:00:02Z",
    "completedAt": "2026-04-14T13:00:18Z",
    "duration": 16000,
    "tokensInput": 2340,
    "tokensOutput": 1856,
    "estimatedCost": 0.0312,
    "output": "## Weekly Pipeline Report\n\n...",
    "model": "claude-opus-4-5",
    "error": None,
    "deliveries": [
        {
            "type": "slack",
            "target": "#docs-team",
            "status": "delivered",
            "attempts": 1,
            "error": None,
            "at": "2026-04-14T13:00:18Z",
        }
    ],
    "replayOf": None,
}

MANUAL_RUN: dict[str, Any] = {
    "runId": RUN_ID,
    "automationId": AUTOMATION_ID,
    "status": "running",
    "startedAt": "2026-04-14T15:30:00Z",
    "replayOf": None,
}

SCHEDULE: dict[str, Any] = {
    "id": AUTOMATION_ID,
    "schedule": "0 8 * * 1-5",
    "timezone": "America/Los_Angeles",
    "description": "At 08:00, Monday through Friday",
    "status": "active",
    "nextRuns": [
        {"at": "2026-12-04T16:00:00Z", "local": "2026-12-04T08:00:00-08:00"},
        {"at": "2026-12-07T16:00:00Z", "local": "2026-12-07T08:00:00-08:00"},
    ],
}

LOGS: dict[str, Any] = {
    "logs": [
        {
            "time": "2026-04-14T13:00:02Z",
            "level": "info",
            "message": f"run started automation={AUTOMATION_ID}",
        }
    ],
    "hasMore": False,
}


def answer(example: dict[str, Any], description: str) -> dict[str, Any]:
    """A `responses` entry for a route decorator."""
    return {
        "description": description,
        "content": {"application/json": {"example": example}},
    }
