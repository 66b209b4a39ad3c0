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
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.context import get_run_context
from prefect.variables import Variable

from blocks.catalog import CATALOG_DOCUMENT_NAME, UnknownModelError, WorkjetModelCatalog
from flows.channels import StoredChannel, WebhookChannel, target_of
from flows.delivery import deliver_webhook
from flows.ids import automation_id, run_id, stats_variable_name
from flows.model import DEFAULT_MAX_TOKENS, ModelCallError, build_client, complete
from flows.record import Delivery, RunRecord, artifact_payload, public_run, timestamp

FLOW_NAME = "workjet-automation"
SCHEDULED_TAG = "auto-scheduled"
TRUNCATION_NOTE = "\n\n_(Output truncated: the model reached its output token limit.)_"


class RunFailedError(RuntimeError):
    """The run ended without doing its job; the message is the run's `error`."""


class NotServedError(RuntimeError):
    """The automation names something this build cannot run yet."""


async def load_catalog() -> WorkjetModelCatalog:
    """The operator's catalogue from Prefect, or the built-in defaults."""
    try:
        return await WorkjetModelCatalog.aload(CATALOG_DOCUMENT_NAME)
    except ValueError:
        return WorkjetModelCatalog()


def user_message(now: datetime) -> str:
    return (
        "Carry out your instructions now and reply with the result only."
        f" The time is {timestamp(now)}."
    )


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


async def _ask_model(
    system_prompt: str, model: str, tools: list[str], record: RunRecord
) -> str:
    if tools:
        raise NotServedError(
            "MCP connectors are not run by this build yet; this automation names "
            + ", ".join(tools)
        )

    catalog = await load_catalog()
    try:
        candidates = catalog.candidates(model)
    except UnknownModelError as unknown:
        raise NotServedError(f"model {unknown} is not in the model catalogue") from None

    reply = await complete(
        build_client(),
        candidates,
        system_prompt,
        user_message(datetime.now(UTC)),
        max_tokens=DEFAULT_MAX_TOKENS,
    )
    record.model = reply.model
    record.tokens_input = reply.usage.input
    record.tokens_output = reply.usage.output
    record.cache_write_tokens = reply.usage.cache_write
    record.cache_read_tokens = reply.usage.cache_read
    record.estimated_cost = catalog.estimate_cost(reply.model, reply.usage)
    record.stop_reason = reply.stop_reason
    record.has_output = bool(reply.text.strip())

    if reply.stop_reason == "max_tokens":
        return reply.text + TRUNCATION_NOTE
    return reply.text


async def _deliver(
    channels: list[StoredChannel], body: dict[str, Any]
) -> list[Delivery]:
    deliveries: list[Delivery] = []

    for channel in channels:
        if isinstance(channel, WebhookChannel):
            secret = None
            if channel.secret_block:
                block: Secret[str] = await Secret.aload(channel.secret_block)
                secret = block.get()
            deliveries.append(await deliver_webhook(channel.url, body, secret))
        else:
            deliveries.append(
                Delivery(
                    type=channel.type,
                    target=target_of(channel),
                    status="failed",
                    error=f"{channel.type} delivery is not available in this build yet",
                    at=timestamp(datetime.now(UTC)),
                )
            )
    return deliveries


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
        output = await _ask_model(system_prompt, model, tools or [], record)
    except (ModelCallError, NotServedError) as error:
        record.error = str(error)

    if record.error is None and not record.has_output:
        record.error = "the model returned no output"

    if record.error is None and channels:
        body = _webhook_body(flow_run, deployment_id, name, record, output, started_at)
        record.deliveries = await _deliver(channels, body)
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
