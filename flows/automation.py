"""The flow every automation deploys: ask the model, record the run, deliver it.

Each automation is a deployment of this one flow; its configuration arrives as the
deployment's parameters, so a run keeps the configuration it started with even if
the automation is changed while it runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.context import get_run_context
from prefect.variables import Variable

from flows.agent import NotServedError, produce_output
from flows.channels import StoredChannel
from flows.delivery import deliver_all
from flows.ids import automation_id, run_id, stats_variable_name
from flows.model import ModelCallError
from flows.record import RunRecord, artifact_payload, public_run, timestamp

FLOW_NAME = "workjet-automation"
SCHEDULED_TAG = "auto-scheduled"


class RunFailedError(RuntimeError):
    """The run ended without doing its job; the message is the run's `error`."""


async def _update_stats(deployment_id: UUID, changes: dict[str, Any]) -> None:
    """Add this run to the automation's running totals in a Prefect variable."""
    name = stats_variable_name(deployment_id)
    current: Any = await Variable.aget(name, default=None)  # type: ignore[func-returns-value]
    stats: dict[str, Any] = dict(current) if isinstance(current, dict) else {}

    for key, value in changes.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            stats[key] = round(stats.get(key, 0) + value, 6)
        else:
            stats[key] = value
    await Variable.aset(name, stats, overwrite=True)


async def _write_artifact(flow_run_id: UUID, record: RunRecord, output: str) -> None:
    async with get_client() as client:
        artifact = ArtifactCreate(
            **artifact_payload(record, output), flow_run_id=flow_run_id
        )
        await client.create_artifact(artifact)


@flow(name=FLOW_NAME, description="Run one Workjet automation: model, record, deliver.")
async def run_automation(
    name: str,
    system_prompt: str,
    model: str = "standard",
    tools: list[str] | None = None,
    channels: list[StoredChannel] | None = None,
) -> None:
    """Ask the model, keep the run record in Prefect, deliver the output."""
    logger = get_run_logger()
    flow_run = get_run_context().flow_run  # type: ignore[union-attr]
    assert flow_run is not None and flow_run.deployment_id is not None
    deployment_id = flow_run.deployment_id
    started_at = flow_run.start_time or datetime.now(UTC)
    await _update_stats(deployment_id, {"lastRunAt": timestamp(started_at)})
    logger.info("run started automation=%s", automation_id(deployment_id))

    record = RunRecord()
    output = ""
    try:
        output = await produce_output(system_prompt, model, tools or [], record)
    except (ModelCallError, NotServedError) as error:
        record.error = str(error)

    if record.error is None and not record.has_output:
        record.error = "the model returned no output"

    if record.error is None and channels:
        body = _webhook_body(flow_run, deployment_id, name, record, output, started_at)
        record.deliveries = await deliver_all(channels, body)
        failed = [d for d in record.deliveries if d.status == "failed"]
        if failed:
            record.error = "; ".join(
                f"delivery to {d.type} {d.target} failed: {d.error}" for d in failed
            )

    await _write_artifact(flow_run.id, record, output)
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


def _webhook_body(
    flow_run: Any,
    deployment_id: UUID,
    name: str,
    record: RunRecord,
    output: str,
    started_at: datetime,
) -> dict[str, Any]:
    trigger = "schedule" if SCHEDULED_TAG in (flow_run.tags or []) else "manual"
    run = public_run(
        run_id=run_id(flow_run.id),
        automation_id=automation_id(deployment_id),
        status="success",
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
