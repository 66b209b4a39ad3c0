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
import logging
import re
import secrets
from datetime import UTC, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import (
    DeploymentScheduleCreate,
    DeploymentScheduleUpdate,
    DeploymentUpdate,
)
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterTags,
)
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule
from prefect.client.schemas.sorting import DeploymentSort
from prefect.exceptions import ObjectNotFound
from prefect.utilities.callables import parameter_schema

from api.channel_secrets import ChannelSecrets
from api.errors import (
    BudgetExhaustedError,
    InvalidRequestError,
    NotFoundError,
    quoted_id,
)
from api.guardrails import guardrails_changed, spend_out, stored_guardrails
from api.history import RunHistory, summary
from api.mapping import (
    automation_out,
    concurrency_of,
    flow_parameters,
    next_run_at,
    schedule_of,
    stored_channels,
)
from api.prefect_calls import prefect_boundary
from api.schedules import describe_cron, next_fire_times
from api.schemas import (
    ActivateOut,
    AutomationCreate,
    AutomationList,
    AutomationOut,
    AutomationUpdate,
    FireTime,
    PauseOut,
    SchedulePreview,
)
from api.template import DeploymentTemplate, organization_tag
from blocks.catalog import CATALOG_DOCUMENT_NAME, UnknownModelError, WorkjetModelCatalog
from blocks.connectors import WorkjetMcpConnector
from flows.alerts import FAILURES_KEY, PAUSED_REASON_KEY
from flows.automation import FLOW_NAME, run_automation
from flows.budget import Budgets, budgets_of
from flows.guardrails import Guardrails
from flows.ids import automation_id, deployment_id_of
from flows.record import timestamp

logger = logging.getLogger(__name__)

_UNSAFE_NAME_CHARS = re.compile(r"[/%&<>]")


def _now() -> datetime:
    return datetime.now(UTC)


class AutomationService:
    def __init__(self, client: PrefectClient, template: DeploymentTemplate) -> None:
        self.client = client
        self.template = template
        self.history = RunHistory(client)
        self.secrets = ChannelSecrets(client)
        self._flow_id: UUID | None = None
        self._parameter_schema = parameter_schema(
            run_automation
        ).model_dump_for_openapi()

    # ---- automations ---------------------------------------------------------

    @prefect_boundary
    async def create(self, organization: str, body: AutomationCreate) -> AutomationOut:
        await self._check_model(body.model)
        await self._check_tools(body.tools)
        channels = await self.secrets.store(body.channels, previous=[])
        limit, options = concurrency_of(body.overlap_policy)

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
            concurrency_limit=limit,
            concurrency_options=options,
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
        stats = await self.history.read_stats([d.id for d in deployments])

        now = _now()
        return AutomationList(
            automations=[automation_out(d, stats.get(d.id), now) for d in deployments],
            total=total,
        )

    @prefect_boundary
    async def read(self, organization: str, public_id: str) -> AutomationOut:
        deployment = await self.read_owned(organization, public_id)
        (stats, org_budget, org_spend), counts = await asyncio.gather(
            self.history.read_guardrail_state(deployment.id, organization),
            self.history.count_runs(deployment.id),
        )

        automation = automation_out(deployment, stats, _now())
        automation.runs = summary(counts, stats)
        automation.spend_this_month = spend_out(
            self._budgets(organization, deployment, stats, org_budget, org_spend)
        )
        return automation

    async def check_budget(
        self, organization: str, deployment: DeploymentResponse
    ) -> None:
        """Refuse a run by hand while a monthly budget is spent."""
        stats, org_budget, org_spend = await self.history.read_guardrail_state(
            deployment.id, organization
        )
        budgets = self._budgets(organization, deployment, stats, org_budget, org_spend)

        problem = budgets.exhausted()
        if problem is None:
            return
        own = budgets.budget is not None and budgets.spent >= budgets.budget
        raise BudgetExhaustedError(
            f"A monthly budget is spent: {problem}. Raise the budget or wait for"
            " the month to turn.",
            param="monthlyBudgetUsd" if own else None,
        )

    @staticmethod
    def _budgets(
        organization: str,
        deployment: DeploymentResponse,
        stats: dict[str, Any],
        org_budget: Any,
        org_spend: Any,
    ) -> Budgets:
        _, zone, _ = schedule_of(deployment)
        guardrails = Guardrails.model_validate(
            (deployment.parameters or {}).get("guardrails") or {}
        )
        return budgets_of(
            stats=stats,
            budget=guardrails.monthly_budget_usd,
            zone=zone,
            organization=organization,
            org_budget=org_budget,
            org_spend=org_spend,
            now=_now(),
        )

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
        if body.timeout_seconds is not None:
            parameters["timeout_seconds"] = body.timeout_seconds

        if guardrails_changed(body):
            parameters["guardrails"] = stored_guardrails(
                body, parameters.get("guardrails")
            )

        previous_channels = stored_channels(parameters)
        if body.channels is not None:
            parameters["channels"] = await self.secrets.store(
                body.channels, previous=previous_channels
            )

        if body.overlap_policy is not None:
            parameters["overlap_policy"] = body.overlap_policy

        update = DeploymentUpdate(parameters=parameters)
        if "description" in fields:
            update.description = body.description or ""
        if body.overlap_policy is not None:
            limit, options = concurrency_of(body.overlap_policy)
            update.concurrency_limit = limit
            update.concurrency_options = options
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
        await self.secrets.forget(previous_channels, stored_channels(parameters))

        logger.info("automation updated automation=%s", public_id)
        return await self.read(organization, public_id)

    @prefect_boundary
    async def delete(self, organization: str, public_id: str) -> None:
        deployment = await self.read_owned(organization, public_id)

        # Pausing first stops the scheduler adding runs while history is removed.
        await self.client.pause_deployment(deployment.id)
        await self.history.cancel_active_runs(deployment.id)
        await self.history.delete_runs(deployment.id)
        await self.client.delete_deployment(deployment.id)

        await self.history.delete_stats(deployment.id)
        await self.secrets.forget(stored_channels(deployment.parameters or {}), [])
        logger.info("automation deleted automation=%s", public_id)

    @prefect_boundary
    async def pause(
        self, organization: str, public_id: str, reason: str | None = None
    ) -> PauseOut:
        deployment = await self.read_owned(organization, public_id)
        await self.client.pause_deployment(deployment.id)
        # A pause without a reason must not show the reason of an earlier one.
        await self.history.update_stats(deployment.id, {PAUSED_REASON_KEY: reason})
        logger.info("automation paused automation=%s", public_id)
        return PauseOut(id=public_id, status="paused")

    @prefect_boundary
    async def activate(self, organization: str, public_id: str) -> ActivateOut:
        deployment = await self.read_owned(organization, public_id)
        await self.client.resume_deployment(deployment.id)
        # Activated again, the automation starts a fresh streak of failures: the
        # one that paused it must not pause it again at the next failure.
        await self.history.update_stats(
            deployment.id, {PAUSED_REASON_KEY: None, FAILURES_KEY: 0}
        )
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
                    param=f"tools[{index}]",
                    code="connector_not_configured",
                )

    async def _count_deployments(self, owned: DeploymentFilter) -> int:
        counted = await self.client.request(
            "POST",
            "/deployments/count",
            json={"deployments": owned.model_dump(mode="json", exclude_unset=True)},
        )
        return int(counted.json())
