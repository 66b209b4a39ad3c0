"""Translation between Prefect's objects and the API's, in both directions.

Pure functions only: nothing here talks to Prefect, so every rule of the mapping is
tested without a server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect.client.schemas.objects import (
    Artifact,
    ConcurrencyLimitStrategy,
    ConcurrencyOptions,
    FlowRun,
    StateType,
)
from prefect.client.schemas.responses import DeploymentResponse
from pydantic import TypeAdapter

from api.guardrails import guardrails_out, stored_guardrails
from api.schedules import next_fire_time
from api.schemas import (
    TIMEOUT_DEFAULT_SECONDS,
    AutomationCreate,
    AutomationOut,
    ChannelIn,
    ChannelOut,
    OverlapPolicy,
    RunOut,
    WebhookChannelIn,
)
from flows.channels import StoredChannel
from flows.ids import automation_id, run_id
from flows.record import decode_metadata, public_run, timestamp
from flows.triggers import replay_of, trigger_of

RUN_STATE_TYPES: dict[str, list[StateType]] = {
    "success": [StateType.COMPLETED],
    "failure": [StateType.FAILED, StateType.CRASHED, StateType.CANCELLED],
    "running": [
        StateType.SCHEDULED,
        StateType.PENDING,
        StateType.RUNNING,
        StateType.CANCELLING,
        StateType.PAUSED,
    ],
}
_STATUS_OF_STATE = {
    state: status for status, states in RUN_STATE_TYPES.items() for state in states
}
_STORED_CHANNELS: TypeAdapter[list[StoredChannel]] = TypeAdapter(list[StoredChannel])


def run_status(state_type: StateType | None) -> str:
    if state_type is None:
        return "running"
    return _STATUS_OF_STATE.get(state_type, "running")


def stored_channels(parameters: dict[str, Any]) -> list[StoredChannel]:
    return _STORED_CHANNELS.validate_python(parameters.get("channels") or [])


def channel_out(channel: StoredChannel) -> ChannelOut:
    data = channel.model_dump(exclude_none=True)
    if data["type"] == "webhook":
        data["secret_set"] = data.pop("secret_block", None) is not None
    return ChannelOut.model_validate(data)


def store_channel(channel: ChannelIn, secret_block: str | None) -> dict[str, Any]:
    """The parameter form of a requested channel; a webhook secret stays out of it."""
    data = channel.model_dump(exclude_none=True)
    if isinstance(channel, WebhookChannelIn):
        data.pop("secret", None)
        if secret_block:
            data["secret_block"] = secret_block
    return data


def flow_parameters(
    body: AutomationCreate, channels: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "name": body.name,
        "system_prompt": body.system_prompt,
        "model": body.model,
        "tools": list(body.tools),
        "channels": channels,
        "timeout_seconds": body.timeout_seconds,
        "overlap_policy": body.overlap_policy,
        "guardrails": stored_guardrails(body),
    }


def concurrency_of(
    policy: OverlapPolicy,
) -> tuple[int | None, ConcurrencyOptions | None]:
    """The deployment's concurrency limit for an overlap policy.

    `skip` and `queue` both run one run at a time, the next waiting for the slot;
    under `skip` the flow itself then ends a scheduled run that fell due while the
    one before it was running. Prefect's CANCEL_NEW would also cancel manual runs,
    backfills and catch-up runs, which are meant to run.
    """
    if policy == "allow":
        return None, None
    return 1, ConcurrencyOptions(collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def overlap_policy_of(deployment: DeploymentResponse) -> OverlapPolicy:
    """Read back from Prefect, so a limit removed in its UI shows as `allow`."""
    if deployment.global_concurrency_limit is None:
        return "allow"
    stored = (deployment.parameters or {}).get("overlap_policy")
    return "queue" if stored == "queue" else "skip"


def schedule_of(deployment: DeploymentResponse) -> tuple[str, str, bool]:
    """The cron string, the timezone, and whether the schedule is active."""
    for deployment_schedule in deployment.schedules:
        schedule = deployment_schedule.schedule
        cron = getattr(schedule, "cron", None)
        if cron:
            zone = getattr(schedule, "timezone", None) or "UTC"
            return cron, zone, deployment_schedule.active
    return "", "UTC", False


def next_run_at(deployment: DeploymentResponse, now: datetime) -> str | None:
    cron, zone, active = schedule_of(deployment)
    if deployment.paused or not active or not cron:
        return None
    return timestamp(next_fire_time(cron, zone, after=now))


def automation_out(
    deployment: DeploymentResponse, stats: dict[str, Any] | None, now: datetime
) -> AutomationOut:
    parameters = deployment.parameters or {}
    cron, zone, _ = schedule_of(deployment)
    created = deployment.created or now
    return AutomationOut(
        id=automation_id(deployment.id),
        name=str(parameters.get("name") or deployment.name),
        description=deployment.description or None,
        status="paused" if deployment.paused else "active",
        schedule=cron,
        timezone=zone,
        model=str(parameters.get("model") or "standard"),
        system_prompt=str(parameters.get("system_prompt") or ""),
        tools=list(parameters.get("tools") or []),
        channels=[channel_out(c) for c in stored_channels(parameters)],
        overlap_policy=overlap_policy_of(deployment),
        timeout_seconds=int(
            parameters.get("timeout_seconds") or TIMEOUT_DEFAULT_SECONDS
        ),
        last_run_at=(stats or {}).get("lastRunAt"),
        next_run_at=next_run_at(deployment, now),
        created_at=timestamp(created) or "",
        updated_at=timestamp(deployment.updated or created) or "",
        **guardrails_out(parameters, stats, bool(deployment.paused)),
    )


def run_out(flow_run: FlowRun, artifact: Artifact | None) -> RunOut:
    state = flow_run.state
    status = run_status(state.type if state else None)
    record = decode_metadata(artifact.metadata_) if artifact else None
    output = artifact.data if artifact and isinstance(artifact.data, str) else None
    assert flow_run.deployment_id is not None

    # A run Prefect ended (lost worker, overlap) has no record of it: the state's
    # message says why.
    fallback_error = None
    if status == "failure" and state is not None:
        fallback_error = state.message or state.name
    if state is not None and state.type == StateType.CANCELLED:
        # Whatever the run had recorded before, it ended because it was cancelled.
        fallback_error = "cancelled"
        record = record.model_copy(update={"error": fallback_error}) if record else None

    run = public_run(
        run_id=run_id(flow_run.id),
        automation_id=automation_id(flow_run.deployment_id),
        status=status,
        trigger=trigger_of(flow_run.tags),
        # Prefect stamps a start time on a run cancelled before it ever ran; only a
        # run that ran (run_count > 0) started.
        started_at=(flow_run.start_time if flow_run.run_count else None)
        or flow_run.expected_start_time,
        completed_at=flow_run.end_time,
        record=record,
        output=output,
        error=fallback_error,
        replay_of=replay_of(flow_run.tags),
    )
    return RunOut.model_validate(run)
