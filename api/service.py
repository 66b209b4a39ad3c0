"""Automations on Prefect: the layer between the routes and Prefect's API.

An automation is a deployment of the automation flow. Its configuration is the
deployment's parameters, its schedule the deployment's one cron schedule, its status
the deployment's paused flag and its organization a `workjet-org:<id>` tag. Runs are
the deployment's flow runs; each run's record is a markdown artifact on it. Every
method makes a fixed number of Prefect calls, however many automations or runs
exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from prefect.blocks.system import Secret
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import (
    DeploymentScheduleCreate,
    DeploymentScheduleUpdate,
    DeploymentUpdate,
)
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterTags,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule
from prefect.client.schemas.sorting import DeploymentSort, FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling
from prefect.utilities.callables import parameter_schema
from pydantic import SecretStr

from api.errors import InvalidRequestError, NotFoundError, quoted_id
from api.mapping import (
    automation_out,
    flow_parameters,
    next_run_at,
    run_out,
    run_status,
    schedule_of,
    store_channel,
    stored_channels,
)
from api.prefect_calls import prefect_boundary
from api.run_filters import RunQuery, history_filter
from api.schedules import describe_cron, next_fire_times
from api.schemas import (
    ActivateOut,
    AutomationCreate,
    AutomationList,
    AutomationOut,
    AutomationUpdate,
    ChannelIn,
    FireTime,
    PauseOut,
    RunOut,
    RunSummary,
    SchedulePreview,
    WebhookChannelIn,
)
from api.template import DeploymentTemplate, organization_tag
from blocks.catalog import CATALOG_DOCUMENT_NAME, UnknownModelError, WorkjetModelCatalog
from blocks.connectors import WorkjetMcpConnector
from flows.automation import FLOW_NAME, run_automation
from flows.channels import WebhookChannel
from flows.ids import automation_id, deployment_id_of, stats_variable_name
from flows.record import timestamp

logger = logging.getLogger(__name__)

# Earlier than any run: the start of the single bucket that counts all history.
HISTORY_START = datetime(2000, 1, 1, tzinfo=UTC)
ACTIVE_STATES = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
_UNSAFE_NAME_CHARS = re.compile(r"[/%&<>]")


def _now() -> datetime:
    return datetime.now(UTC)


def _runs_filter(deployment_id: UUID, status: str | None = None) -> FlowRunFilter:
    return history_filter(deployment_id, RunQuery(status=status), _now())


@dataclass(frozen=True)
class RunCounts:
    total: int
    success: int
    failure: int
    last: RunOut | None


def _summary(counts: RunCounts, stats: dict[str, Any]) -> RunSummary:
    last = counts.last
    return RunSummary(
        total=counts.total,
        success=counts.success,
        failure=counts.failure,
        running=max(counts.total - counts.success - counts.failure, 0),
        last_run_at=stats.get("lastRunAt") or (last.started_at if last else None),
        last_status=last.status if last else None,
        tokens_input=int(stats.get("tokensInput", 0)),
        tokens_output=int(stats.get("tokensOutput", 0)),
        estimated_cost=float(stats.get("estimatedCost", 0.0)),
    )


class AutomationService:
    def __init__(self, client: PrefectClient, template: DeploymentTemplate) -> None:
        self.client = client
        self.template = template
        self._flow_id: UUID | None = None
        self._parameter_schema = parameter_schema(
            run_automation
        ).model_dump_for_openapi()

    # ---- automations ---------------------------------------------------------

    @prefect_boundary
    async def create(self, organization: str, body: AutomationCreate) -> AutomationOut:
        await self._check_model(body.model)
        await self._check_tools(body.tools)
        channels = await self._store_channels(body.channels, previous=[])

        deployment_id = await self.client.create_deployment(
            flow_id=await self._automation_flow_id(),
            name=self._deployment_name(body.name),
            # Prefect stores None as the text "None"; no description is "".
            description=body.description or "",
            parameters=flow_parameters(body, channels),
            parameter_openapi_schema=self._parameter_schema,
            schedules=[
                DeploymentScheduleCreate(
                    schedule=CronSchedule(cron=body.schedule, timezone=body.timezone),
                    active=True,
                )
            ],
            paused=False,
            tags=[*self.template.tags, organization_tag(organization)],
            work_pool_name=self.template.work_pool_name,
            entrypoint=self.template.entrypoint,
            pull_steps=self.template.pull_steps,
        )
        deployment = await self.client.read_deployment(deployment_id)
        logger.info(
            "automation created automation=%s organization=%s",
            automation_id(deployment_id),
            organization,
        )
        return automation_out(deployment, None, _now())

    @prefect_boundary
    async def list_automations(
        self, organization: str, limit: int, offset: int
    ) -> AutomationList:
        owned = DeploymentFilter(
            tags=DeploymentFilterTags(all_=[organization_tag(organization)])
        )
        deployments, total = await asyncio.gather(
            self.client.read_deployments(
                deployment_filter=owned,
                sort=DeploymentSort.CREATED_DESC,
                limit=limit,
                offset=offset,
            ),
            self._count_deployments(owned),
        )
        stats = await self._read_stats([d.id for d in deployments])

        now = _now()
        return AutomationList(
            automations=[automation_out(d, stats.get(d.id), now) for d in deployments],
            total=total,
        )

    @prefect_boundary
    async def read(self, organization: str, public_id: str) -> AutomationOut:
        deployment = await self.read_owned(organization, public_id)
        all_stats, counts = await asyncio.gather(
            self._read_stats([deployment.id]), self._count_runs(deployment.id)
        )
        stats = all_stats.get(deployment.id, {})

        automation = automation_out(deployment, stats, _now())
        automation.runs = _summary(counts, stats)
        return automation

    @prefect_boundary
    async def update(
        self, organization: str, public_id: str, body: AutomationUpdate
    ) -> AutomationOut:
        deployment = await self.read_owned(organization, public_id)
        fields = body.model_fields_set
        parameters = dict(deployment.parameters or {})

        if body.model is not None:
            await self._check_model(body.model)
            parameters["model"] = body.model
        if body.tools is not None:
            await self._check_tools(body.tools)
            parameters["tools"] = list(body.tools)
        if body.name is not None:
            parameters["name"] = body.name
        if body.system_prompt is not None:
            parameters["system_prompt"] = body.system_prompt

        previous_channels = stored_channels(parameters)
        if body.channels is not None:
            parameters["channels"] = await self._store_channels(
                body.channels, previous=previous_channels
            )

        update = DeploymentUpdate(parameters=parameters)
        if "description" in fields:
            update.description = body.description or ""
        if body.schedule is not None or body.timezone is not None:
            cron, zone, _ = schedule_of(deployment)
            update.schedules = [
                DeploymentScheduleUpdate(
                    schedule=CronSchedule(
                        cron=body.schedule or cron, timezone=body.timezone or zone
                    ),
                    active=True,
                )
            ]
        await self.client.update_deployment(deployment.id, update)
        await self._forget_secrets(previous_channels, stored_channels(parameters))

        logger.info("automation updated automation=%s", public_id)
        return await self.read(organization, public_id)

    @prefect_boundary
    async def delete(self, organization: str, public_id: str) -> None:
        deployment = await self.read_owned(organization, public_id)

        # Pausing first stops the scheduler adding runs while history is removed.
        await self.client.pause_deployment(deployment.id)
        await self._cancel_active_runs(deployment.id)
        await self._delete_runs(deployment.id)
        await self.client.delete_deployment(deployment.id)

        await self._delete_stats(deployment.id)
        await self._forget_secrets(stored_channels(deployment.parameters or {}), [])
        logger.info("automation deleted automation=%s", public_id)

    @prefect_boundary
    async def pause(self, organization: str, public_id: str) -> PauseOut:
        deployment = await self.read_owned(organization, public_id)
        await self.client.pause_deployment(deployment.id)
        logger.info("automation paused automation=%s", public_id)
        return PauseOut(id=public_id, status="paused")

    @prefect_boundary
    async def activate(self, organization: str, public_id: str) -> ActivateOut:
        deployment = await self.read_owned(organization, public_id)
        await self.client.resume_deployment(deployment.id)
        deployment.paused = False
        logger.info("automation activated automation=%s", public_id)
        return ActivateOut(
            id=public_id, status="active", next_run_at=next_run_at(deployment, _now())
        )

    @prefect_boundary
    async def preview(
        self,
        organization: str,
        public_id: str,
        count: int,
        start: datetime | None = None,
    ) -> SchedulePreview:
        """The next fire times from Prefect's own computation, as `nextRunAt` is."""
        deployment = await self.read_owned(organization, public_id)
        cron, zone, _ = schedule_of(deployment)

        after = start or _now()
        times = next_fire_times(cron, zone, after=after, count=count) if cron else []
        local_zone = ZoneInfo(zone)
        return SchedulePreview(
            id=public_id,
            schedule=cron,
            timezone=zone,
            description=describe_cron(cron) if cron else "",
            status="paused" if deployment.paused else "active",
            next_runs=[
                FireTime(
                    at=timestamp(moment) or "",
                    local=moment.astimezone(local_zone).isoformat(),
                )
                for moment in times
            ],
        )

    # ---- helpers -----------------------------------------------------------------

    async def read_owned(self, organization: str, public_id: str) -> DeploymentResponse:
        missing = NotFoundError(
            f"No automation {quoted_id(public_id)} in this organization.", param="id"
        )
        deployment_id = deployment_id_of(public_id)
        if deployment_id is None:
            raise missing

        try:
            deployment = await self.client.read_deployment(deployment_id)
        except ObjectNotFound:
            raise missing from None

        if organization_tag(organization) not in deployment.tags:
            raise missing
        return deployment

    async def _automation_flow_id(self) -> UUID:
        if self._flow_id is None:
            self._flow_id = await self.client.create_flow_from_name(FLOW_NAME)
        return self._flow_id

    @staticmethod
    def _deployment_name(name: str) -> str:
        # Deployment names are unique per flow and Prefect upserts on a clash, so a
        # random suffix keeps two automations with one name from overwriting.
        readable = _UNSAFE_NAME_CHARS.sub("-", name)[:120]
        return f"{readable} [{secrets.token_hex(4)}]"

    async def _check_model(self, model: str) -> None:
        catalog = await self._catalog()
        try:
            catalog.candidates(model)
        except UnknownModelError:
            raise InvalidRequestError(
                f"model: '{model}' is neither a tier (standard, premium, enterprise)"
                " nor a model id in the catalogue; known: "
                + ", ".join(catalog.known_names()),
                param="model",
            ) from None

    async def _catalog(self) -> WorkjetModelCatalog:
        try:
            return await WorkjetModelCatalog.aload(
                CATALOG_DOCUMENT_NAME, client=self.client
            )
        except ValueError:
            return WorkjetModelCatalog()

    async def _check_tools(self, tools: list[str]) -> None:
        if not tools:
            return

        documents = await self.client.read_block_documents_by_type(
            block_type_slug=WorkjetMcpConnector.get_block_type_slug(),
            include_secrets=False,
        )
        configured = {document.name for document in documents}
        for index, tool in enumerate(tools):
            if tool not in configured:
                raise InvalidRequestError(
                    f"tools[{index}]: connector '{tool}' is not configured here;"
                    " configure it as a 'Workjet MCP Connector' block named"
                    f" '{tool}' (see the README, Connectors)",
                    param="tools",
                    code="connector_not_configured",
                )

    async def _store_channels(
        self, channels: list[ChannelIn], previous: list[Any]
    ) -> list[dict[str, Any]]:
        """Channels for the parameters; webhook secrets go to Prefect Secret blocks.

        A webhook sent again without its secret keeps the secret already stored for
        the same URL, since secrets are write-only and a client cannot echo them.
        """
        kept = {
            c.url: c.secret_block
            for c in previous
            if isinstance(c, WebhookChannel) and c.secret_block
        }
        stored: list[dict[str, Any]] = []
        for channel in channels:
            secret_block = None
            if isinstance(channel, WebhookChannelIn):
                if channel.secret:
                    secret_block = f"workjet-webhook-{secrets.token_hex(8)}"
                    await Secret(value=SecretStr(channel.secret)).asave(
                        secret_block, client=self.client
                    )
                else:
                    secret_block = kept.get(channel.url)
            stored.append(store_channel(channel, secret_block))
        return stored

    async def _forget_secrets(self, previous: list[Any], current: list[Any]) -> None:
        in_use = {c.secret_block for c in current if isinstance(c, WebhookChannel)}
        for channel in previous:
            if not isinstance(channel, WebhookChannel) or not channel.secret_block:
                continue
            if channel.secret_block in in_use:
                continue
            try:
                document = await self.client.read_block_document_by_name(
                    channel.secret_block, "secret", include_secrets=False
                )
                await self.client.delete_block_document(document.id)
            except ObjectNotFound:
                pass

    async def _read_stats(
        self, deployment_ids: list[UUID]
    ) -> dict[UUID, dict[str, Any]]:
        """Running totals the flow keeps per automation, in one Prefect call."""
        if not deployment_ids:
            return {}

        names = {stats_variable_name(i): i for i in deployment_ids}
        response = await self.client.request(
            "POST",
            "/variables/filter",
            json={"variables": {"name": {"any_": list(names)}}, "limit": len(names)},
        )
        return {
            names[item["name"]]: item["value"]
            for item in response.json()
            if isinstance(item.get("value"), dict)
        }

    async def _delete_stats(self, deployment_id: UUID) -> None:
        with contextlib.suppress(ObjectNotFound):
            await self.client.delete_variable_by_name(
                stats_variable_name(deployment_id)
            )

    async def _count_deployments(self, owned: DeploymentFilter) -> int:
        counted = await self.client.request(
            "POST",
            "/deployments/count",
            json={"deployments": owned.model_dump(mode="json", exclude_unset=True)},
        )
        return int(counted.json())

    async def _count_runs(self, deployment_id: UUID) -> RunCounts:
        """The history counts by status and the latest run, read side by side."""
        by_state, latest = await asyncio.gather(
            self._count_by_state(deployment_id),
            self.client.read_flow_runs(
                flow_run_filter=_runs_filter(deployment_id),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=1,
            ),
        )
        by_status: dict[str, int] = {}
        for state_type, count in by_state.items():
            status = run_status(StateType(state_type))
            by_status[status] = by_status.get(status, 0) + count

        last = run_out(latest[0], None) if latest else None
        return RunCounts(
            total=sum(by_status.values()),
            success=by_status.get("success", 0),
            failure=by_status.get("failure", 0),
            last=last,
        )

    async def _count_by_state(self, deployment_id: UUID) -> dict[str, int]:
        """Run counts per Prefect state type in one call.

        Prefect's run history groups runs by state within time buckets; one bucket
        spanning all of history gives every count at once, where counting each
        status would take a call apiece.
        """
        now = _now()
        history = _runs_filter(deployment_id)
        response = await self.client.request(
            "POST",
            "/flow_runs/history",
            json={
                "history_start": HISTORY_START.isoformat(),
                "history_end": now.isoformat(),
                "history_interval_seconds": (now - HISTORY_START).total_seconds() + 1,
                "flow_runs": history.model_dump(mode="json", exclude_unset=True),
            },
        )
        counts: dict[str, int] = {}
        for bucket in response.json():
            for state in bucket.get("states", []):
                kind = str(state["state_type"])
                counts[kind] = counts.get(kind, 0) + int(state["count_runs"])
        return counts

    async def _cancel_active_runs(self, deployment_id: UUID) -> None:
        active = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=ACTIVE_STATES)
                ),
            ),
            limit=200,
        )
        for flow_run in active:
            await self.client.set_flow_run_state(
                flow_run.id, Cancelling(message="automation deleted"), force=True
            )

    async def _delete_runs(self, deployment_id: UUID) -> None:
        """Delete the runs, 50 at a time as Prefect allows, and their artifacts.

        Prefect keeps a deleted run's artifacts, and those hold the run's output.
        """
        every_run = {"deployment_id": {"any_": [str(deployment_id)]}}
        while True:
            # The client's route list predates bulk delete; its httpx client does not.
            response = await self.client._client.post(
                "/flow_runs/bulk_delete", json={"flow_runs": every_run}
            )
            response.raise_for_status()
            deleted = [UUID(i) for i in response.json().get("deleted", [])]
            if not deleted:
                return
            await self._delete_artifacts(deleted)

    async def _delete_artifacts(self, flow_run_ids: list[UUID]) -> None:
        artifacts = await self.client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=flow_run_ids)
            ),
            limit=200,
        )
        for artifact in artifacts:
            with contextlib.suppress(ObjectNotFound):
                await self.client.delete_artifact(artifact.id)
