"""The run-history record, as the flow writes it and the API reads it back.

A run's record travels as one Prefect markdown artifact on its flow run: the
artifact's data is the model's output exactly (so the Prefect UI shows it), and the
rest of the record is JSON in the artifact's metadata. Prefect cuts each metadata
value at 500 characters, so the JSON is split over numbered keys and joined again
on read.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

ARTIFACT_TYPE = "markdown"
ARTIFACT_DESCRIPTION = "Workjet run output"
RECORD_KEY = "workjet.record"
_CHUNK = 450


class Delivery(BaseModel):
    """What happened when the run was sent to one channel."""

    type: str
    target: str
    status: Literal["delivered", "failed", "skipped"]
    attempts: int = 0
    error: str | None = None
    at: str | None = None


class ToolCall(BaseModel):
    """One call of an MCP tool during the run; `duration` is in milliseconds."""

    connector: str
    tool: str
    duration: int
    failed: bool
    error: str | None = None


class RunRecord(BaseModel):
    """Everything a run reports beyond what Prefect's flow run already knows."""

    model: str | None = None
    tokens_input: int = 0
    tokens_output: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    estimated_cost: float = 0.0
    stop_reason: str | None = None
    error: str | None = None
    has_output: bool = False
    deliveries: list[Delivery] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)


def encode_metadata(record: RunRecord) -> dict[str, str]:
    text = record.model_dump_json()
    chunks = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
    encoded = {f"{RECORD_KEY}.{index}": chunk for index, chunk in enumerate(chunks)}
    encoded[RECORD_KEY] = str(len(chunks))
    return encoded


def decode_metadata(metadata: dict[str, str] | None) -> RunRecord | None:
    """The record stored by `encode_metadata`, or None if this is not one."""
    if not metadata or RECORD_KEY not in metadata:
        return None

    try:
        count = int(metadata[RECORD_KEY])
        text = "".join(metadata[f"{RECORD_KEY}.{index}"] for index in range(count))
        return RunRecord.model_validate(json.loads(text))
    except (KeyError, ValueError):
        return None


def artifact_payload(record: RunRecord, output: str | None) -> dict[str, Any]:
    """The body of Prefect's `POST /artifacts/` for this run."""
    return {
        "type": ARTIFACT_TYPE,
        "description": ARTIFACT_DESCRIPTION,
        "data": output or "",
        "metadata_": encode_metadata(record),
    }


def timestamp(moment: Any) -> str | None:
    """RFC 3339 UTC with a Z, second precision, as the contract writes times."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def public_run(
    *,
    run_id: str,
    automation_id: str,
    status: str,
    trigger: str,
    started_at: datetime | None,
    completed_at: datetime | None,
    record: RunRecord | None,
    output: str | None,
    error: str | None = None,
    replay_of: str | None = None,
) -> dict[str, Any]:
    """A run in the API's shape; the webhook body carries the same object."""
    record = record or RunRecord()
    finished = status != "running"
    duration = None
    if finished and started_at is not None and completed_at is not None:
        duration = int((completed_at - started_at).total_seconds() * 1000)

    return {
        "id": run_id,
        "automationId": automation_id,
        "status": status,
        "trigger": trigger,
        "startedAt": timestamp(started_at),
        "completedAt": timestamp(completed_at) if finished else None,
        "duration": duration,
        "tokensInput": record.tokens_input
        + record.cache_write_tokens
        + record.cache_read_tokens,
        "tokensOutput": record.tokens_output,
        "estimatedCost": record.estimated_cost,
        "output": output if finished and record.has_output else None,
        "model": record.model,
        "error": (record.error or error) if status == "failure" else None,
        "deliveries": [d.model_dump() for d in record.deliveries],
        "toolCalls": [call.model_dump() for call in record.tool_calls],
        "replayOf": replay_of,
    }
