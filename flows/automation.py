"""The flow every automation deploys: ask the model, record the run, deliver it.

Each automation is a deployment of this one flow; its configuration arrives as the
deployment's parameters, so a run keeps the configuration it started with even if
the automation is changed while it runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import anyio
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.objects import State, StateType
from prefect.context import get_run_context
from prefect.states import Cancelled

from flows.agent import AgentError, BudgetExceededError, produce_output
from flows.alerts import settle_run
from flows.budget import add_run_cost, skip_when_spent
from flows.catchup import skip_when_missed
from flows.channels import StoredChannel
from flows.delivery import (
    NO_OUTPUT,
    deliver_all,
    delivery_error,
    skipped_deliveries,
)
from flows.guardrails import Guardrails, agent_limits
from flows.ids import automation_id, run_id, stats_variable_name
from flows.model import ModelCallError
from flows.outcomes import TIMEOUT_ERROR
from flows.overlap import OverlapPolicy, skip_when_overlapping
from flows.record import RunRecord, artifact_payload, public_run, timestamp
from flows.triggers import MANUAL_TAG, trigger_of, untagged
from flows.variables import add_to_variable

FLOW_NAME = "workjet-automation"


CANCELLED = "cancelled"


class RunFailedError(RuntimeError):
    """The run ended without doing its job; the message is the run's `error`."""


async def _update_stats(deployment_id: UUID, changes: dict[str, Any]) -> None:
    """Add this run to the automation's running totals in a Prefect variable."""

    def added(stats: dict[str, Any]) -> dict[str, Any]:
        for key, value in changes.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                stats[key] = round(stats.get(key, 0) + value, 6)
            else:
                stats[key] = value
        return stats

    await add_to_variable(stats_variable_name(deployment_id), added)


async def _tag_trigger(flow_run: Any) -> None:
    """Runs started from the Prefect UI or CLI are manual runs: say so in their tags,
    so that history can be filtered by trigger."""
    tags = list(flow_run.tags or [])
    if not untagged(tags):
        return
    async with get_client() as client:
        await client.update_flow_run(flow_run.id, tags=[*tags, MANUAL_TAG])


async def _write_artifact(
    flow_run_id: UUID, record: RunRecord, output: str, existing: UUID | None = None
) -> UUID:
    """Write the run record, or rewrite the one written before delivery."""
    payload = artifact_payload(record, output)
    async with get_client() as client:
        if existing is not None:
            await client.update_artifact(
                existing,
                ArtifactUpdate(data=payload["data"], metadata_=payload["metadata_"]),
            )
            return existing
        artifact = await client.create_artifact(
            ArtifactCreate(**payload, flow_run_id=flow_run_id)
        )
        return artifact.id


# The run record lives in the artifact; a persisted flow result would only leave
# files behind that nothing reads.
@flow(
    name=FLOW_NAME,
    description="Run one Workjet automation: model, record, deliver.",
    persist_result=False,
)
async def run_automation(
    name: str,
    system_prompt: str,
    model: str = "standard",
    tools: list[str] | None = None,
    channels: list[StoredChannel] | None = None,
    timeout_seconds: int = 900,
    guardrails: Guardrails | None = None,
    overlap_policy: OverlapPolicy = "skip",
) -> State[None] | None:
    """Ask the model, keep the run record in Prefect, deliver the output."""
    logger = get_run_logger()
    flow_run = get_run_context().flow_run  # type: ignore[union-attr]
    assert flow_run is not None and flow_run.deployment_id is not None
    deployment_id = flow_run.deployment_id
    started_at = flow_run.start_time or datetime.now(UTC)
    await _update_stats(deployment_id, {"lastRunAt": timestamp(started_at)})
    await _tag_trigger(flow_run)
    logger.info("run started automation=%s", automation_id(deployment_id))

    record = RunRecord()
    output = ""
    # The budget covers every model call, retry, fallback and tool call; a run
    # past it keeps the tokens it spent and delivers nothing.
    with anyio.move_on_after(timeout_seconds) as budget:
        try:
            await skip_when_overlapping(flow_run, deployment_id, overlap_policy)
            await skip_when_missed(flow_run, deployment_id, guardrails)
            await skip_when_spent(flow_run, deployment_id, guardrails)
            output = await produce_output(
                system_prompt, model, tools or [], record, agent_limits(guardrails)
            )
        except BudgetExceededError as stopped:
            # Stopped at a cap: what the model said so far stays in the record.
            record.error = str(stopped)
            output = stopped.output
        except (ModelCallError, AgentError) as error:
            record.error = str(error)
    if budget.cancelled_caught:
        output, record.error, record.has_output = "", TIMEOUT_ERROR, False
        logger.warning("run timed out after %ds", timeout_seconds)

    # A run with nothing to say did not do its job: it is a failure, and no
    # channel gets a blank message (each records a `skipped` delivery instead).
    if record.error is None and not record.has_output:
        record.error = NO_OUTPUT

    # Cancellation reaches the process only when the worker next looks; a run
    # asked to stop must not deliver in the meantime.
    if channels and record.error is None and await _cancel_requested(flow_run.id):
        record.error = CANCELLED

    written = None
    if channels and record.error is not None:
        record.deliveries = skipped_deliveries(channels, f"not sent: {record.error}")
    elif channels:
        # Recorded before delivery as well: a run stopped while it delivers keeps
        # its output, tokens and cost.
        written = await _write_artifact(flow_run.id, record, output)
        body = _webhook_body(flow_run, deployment_id, name, record, output, started_at)
        record.deliveries = await deliver_all(channels, body)
        record.error = delivery_error(record.deliveries)

    await _write_artifact(flow_run.id, record, output, existing=written)
    await _update_stats(
        deployment_id,
        {
            "tokensInput": record.tokens_input
            + record.cache_write_tokens
            + record.cache_read_tokens,
            "tokensOutput": record.tokens_output,
            "estimatedCost": record.estimated_cost,
        },
    )

    if record.error != CANCELLED:
        finished = _webhook_body(
            flow_run,
            deployment_id,
            name,
            record,
            output,
            started_at,
            status="success" if record.error is None else "failure",
        )
        await _settle(guardrails, channels or [], finished, deployment_id, flow_run.id)

    if record.error == CANCELLED:
        logger.info("run cancelled automation=%s", automation_id(deployment_id))
        return Cancelled(message="cancelled before delivery")
    if record.error is not None:
        logger.warning("run failed automation=%s", automation_id(deployment_id))
        raise RunFailedError(record.error)
    logger.info(
        "run finished automation=%s model=%s tokens_in=%d tokens_out=%d cost=%.6f",
        automation_id(deployment_id),
        record.model,
        record.tokens_input,
        record.tokens_output,
        record.estimated_cost,
    )
    return None


async def _cancel_requested(flow_run_id: UUID) -> bool:
    async with get_client() as client:
        current = await client.read_flow_run(flow_run_id)
    state = current.state.type if current.state else None
    return state in (StateType.CANCELLING, StateType.CANCELLED)


async def _settle(
    guardrails: Guardrails | None,
    channels: list[StoredChannel],
    finished: dict[str, Any],
    deployment_id: UUID,
    flow_run_id: UUID,
) -> None:
    """Streak, alerts, auto-pause and monthly spend; their failure must not change
    the run's."""
    try:
        await settle_run(guardrails, channels, finished, deployment_id, flow_run_id)
        await add_run_cost(guardrails, channels, finished, deployment_id)
    except Exception as error:  # noqa: BLE001
        get_run_logger().warning(
            "guardrails not applied automation=%s error=%s",
            finished["automationId"],
            type(error).__name__,
        )


def _webhook_body(
    flow_run: Any,
    deployment_id: UUID,
    name: str,
    record: RunRecord,
    output: str,
    started_at: datetime,
    status: str = "success",
) -> dict[str, Any]:
    trigger = trigger_of(flow_run.tags or [])
    run = public_run(
        run_id=run_id(flow_run.id),
        automation_id=automation_id(deployment_id),
        status=status,
        trigger=trigger,
        started_at=started_at,
        completed_at=datetime.now(UTC),
        record=record,
        output=output,
    )
    return {
        "automationId": automation_id(deployment_id),
        "automationName": name,
        "run": run,
    }
