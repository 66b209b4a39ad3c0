"""The v1 endpoints. Each route checks its input, calls one service method, answers."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Body,
    Depends,
    Header,
    Query,
    Request,
    Response,
    status,
)

from api import examples
from api.backfill import BackfillIn, BackfillOut
from api.errors import (
    AuthenticationError,
    BudgetErrorDoc,
    ConflictError,
    ErrorBodyDoc,
    InvalidRequestError,
    NotFoundError,
)
from api.guardrails import PauseIn
from api.idempotency import IdempotencyStore
from api.keys import KeyVerifier
from api.rate_limit import RateLimiter
from api.run_filters import RunQuery
from api.runs import RunService
from api.schedules import timezone_names
from api.schemas import (
    ActivateOut,
    AutomationCreate,
    AutomationList,
    AutomationOut,
    AutomationUpdate,
    ManualRunOut,
    PauseOut,
    RunList,
    RunLogs,
    RunOut,
    SchedulePreview,
    TimezoneList,
)
from api.service import AutomationService
from blocks.keys import hash_key

router = APIRouter(responses=ErrorBodyDoc)


async def _service(request: Request) -> AutomationService:
    service: AutomationService = request.app.state.service
    return service


async def _runs(request: Request) -> RunService:
    runs: RunService = request.app.state.runs
    return runs


async def _idempotency(request: Request) -> IdempotencyStore:
    store: IdempotencyStore = request.app.state.idempotency
    return store


async def _organization(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationError(
            "Send your API key as 'Authorization: Bearer wj_live_...'.",
            code="missing_api_key",
        )

    verifier: KeyVerifier = request.app.state.keys
    organization = await verifier.organization_of(key.strip())
    if organization is None:
        raise AuthenticationError("The API key is not valid.")

    limiter: RateLimiter = request.app.state.rate_limiter
    limiter.check(hash_key(key.strip()))
    return organization


Organization = Annotated[str, Depends(_organization)]
Service = Annotated[AutomationService, Depends(_service)]
Runs = Annotated[RunService, Depends(_runs)]
Idempotency = Annotated[IdempotencyStore, Depends(_idempotency)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Send the same key to retry safely: the first answer is returned"
        " again for 24 hours instead of acting twice.",
    ),
]
# Times outside these years are surely typos, and beyond them Python's and the
# database's date arithmetic overflow.
MIN_YEAR, MAX_YEAR = 1970, 2999
# Any offset a database can hold; past the end a page is simply empty.
MAX_OFFSET = 2**31 - 1
RunStatus = Literal["success", "failure", "running"]
RunTrigger = Literal["schedule", "manual", "replay"]


@router.get("/automations", response_model=AutomationList)
async def list_automations(
    organization: Organization,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=200)] = 200,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> AutomationList:
    return await service.list_automations(organization, limit, offset)


@router.post(
    "/automations",
    status_code=status.HTTP_201_CREATED,
    response_model=AutomationOut,
    responses={201: examples.answer(examples.AUTOMATION, "The new automation.")},
)
async def create_automation(
    body: Annotated[
        AutomationCreate,
        Body(
            openapi_examples={
                "reference": {
                    "summary": "The reference's example",
                    "value": examples.CREATE_BODY,
                }
            }
        ),
    ],
    organization: Organization,
    service: Service,
    store: Idempotency,
    idempotency_key: IdempotencyKey = None,
) -> AutomationOut:
    if idempotency_key is None:
        return await service.create(organization, body)

    async def recall(stored: dict[str, Any]) -> AutomationOut:
        try:
            automation = await service.read(organization, str(stored["id"]))
        except NotFoundError:
            raise ConflictError(
                "Idempotency-Key: the automation this key created has since been"
                " deleted; use a new key to create another.",
                param="Idempotency-Key",
                code="idempotency_key_reused",
            ) from None
        automation.runs = None
        return automation

    answer, _ = await store.run_once(
        organization=organization,
        endpoint="create",
        key=idempotency_key,
        body=body.model_dump(mode="json", by_alias=True, exclude_unset=True),
        act=lambda: service.create(organization, body),
        remember=lambda automation: {"id": automation.id},
        recall=recall,
    )
    return answer


@router.get("/automations/{automation_id}", response_model=AutomationOut)
async def read_automation(
    automation_id: str, organization: Organization, service: Service
) -> AutomationOut:
    return await service.read(organization, automation_id)


@router.put("/automations/{automation_id}", response_model=AutomationOut)
async def update_automation(
    automation_id: str,
    body: AutomationUpdate,
    organization: Organization,
    service: Service,
) -> AutomationOut:
    return await service.update(organization, automation_id, body)


@router.delete("/automations/{automation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_automation(
    automation_id: str, organization: Organization, service: Service
) -> Response:
    await service.delete(organization, automation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/automations/{automation_id}/activate", response_model=ActivateOut)
async def activate_automation(
    automation_id: str, organization: Organization, service: Service
) -> ActivateOut:
    return await service.activate(organization, automation_id)


@router.post("/automations/{automation_id}/pause", response_model=PauseOut)
async def pause_automation(
    automation_id: str,
    organization: Organization,
    service: Service,
    body: Annotated[PauseIn | None, Body()] = None,
) -> PauseOut:
    reason = body.reason if body is not None else None
    return await service.pause(organization, automation_id, reason)


@router.post(
    "/automations/{automation_id}/run",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ManualRunOut,
    responses={
        202: examples.answer(examples.MANUAL_RUN, "The run, queued."),
        **BudgetErrorDoc,
    },
)
async def run_automation_now(
    automation_id: str,
    organization: Organization,
    runs: Runs,
    store: Idempotency,
    idempotency_key: IdempotencyKey = None,
) -> ManualRunOut:
    if idempotency_key is None:
        return await runs.start(organization, automation_id)

    async def recall(stored: dict[str, Any]) -> ManualRunOut:
        return ManualRunOut.model_validate(stored)

    answer, _ = await store.run_once(
        organization=organization,
        endpoint=f"run:{automation_id}",
        key=idempotency_key,
        body={},
        act=lambda: runs.start(organization, automation_id),
        remember=lambda run: run.model_dump(mode="json", by_alias=True),
        recall=recall,
    )
    return answer


@router.post(
    "/automations/{automation_id}/backfill",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BackfillOut,
    responses=BudgetErrorDoc,
)
async def backfill_automation(
    automation_id: str, body: BackfillIn, organization: Organization, runs: Runs
) -> BackfillOut:
    start = _moment("from", body.start)
    end = _moment("to", body.end)
    assert start is not None and end is not None
    if start >= end:
        raise InvalidRequestError("from: must be earlier than 'to'.", param="from")
    return await runs.backfill(organization, automation_id, start, end)


@router.get("/automations/{automation_id}/runs", response_model=RunList)
async def list_runs(
    automation_id: str,
    organization: Organization,
    runs: Runs,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    run_status: Annotated[RunStatus | None, Query(alias="status")] = None,
    trigger: Annotated[RunTrigger | None, Query()] = None,
    started_from: Annotated[
        str | None, Query(alias="from", description="startedAt at or after (RFC 3339)")
    ] = None,
    started_to: Annotated[
        str | None, Query(alias="to", description="startedAt before (RFC 3339)")
    ] = None,
) -> RunList:
    query = RunQuery(
        status=run_status,
        trigger=trigger,
        started_from=_moment("from", started_from),
        started_to=_moment("to", started_to),
    )
    if (
        query.started_from
        and query.started_to
        and query.started_from > query.started_to
    ):
        raise InvalidRequestError("from: must not be later than 'to'.", param="from")
    return await runs.list_runs(organization, automation_id, limit, offset, query)


@router.get(
    "/automations/{automation_id}/runs/{run_id}",
    response_model=RunOut,
    responses={200: examples.answer(examples.RUN, "The run.")},
)
async def read_run(
    automation_id: str, run_id: str, organization: Organization, runs: Runs
) -> RunOut:
    return await runs.read(organization, automation_id, run_id)


@router.post(
    "/automations/{automation_id}/runs/{run_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunOut,
)
async def cancel_run(
    automation_id: str, run_id: str, organization: Organization, runs: Runs
) -> RunOut:
    return await runs.cancel(organization, automation_id, run_id)


@router.post(
    "/automations/{automation_id}/runs/{run_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ManualRunOut,
    responses={
        202: examples.answer(
            {**examples.MANUAL_RUN, "replayOf": examples.RUN_ID}, "The new run."
        ),
        **BudgetErrorDoc,
    },
)
async def replay_run(
    automation_id: str, run_id: str, organization: Organization, runs: Runs
) -> ManualRunOut:
    return await runs.start(organization, automation_id, replay=run_id)


@router.get(
    "/automations/{automation_id}/runs/{run_id}/logs",
    response_model=RunLogs,
    responses={200: examples.answer(examples.LOGS, "The run's log lines.")},
)
async def read_run_logs(
    automation_id: str,
    run_id: str,
    organization: Organization,
    runs: Runs,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> RunLogs:
    return await runs.logs(organization, automation_id, run_id, limit, offset)


@router.get(
    "/automations/{automation_id}/schedule",
    response_model=SchedulePreview,
    responses={200: examples.answer(examples.SCHEDULE, "The next fire times.")},
)
async def preview_schedule(
    automation_id: str,
    organization: Organization,
    service: Service,
    count: Annotated[int, Query(ge=1, le=50)] = 10,
    start: Annotated[
        str | None,
        Query(
            alias="from",
            description="Fire times at or after this (RFC 3339); default now.",
        ),
    ] = None,
) -> SchedulePreview:
    moment = _moment("from", start)
    return await service.preview(organization, automation_id, count, moment)


@router.get("/timezones", response_model=TimezoneList)
async def list_timezones(organization: Organization) -> TimezoneList:
    names = timezone_names()
    return TimezoneList(timezones=names, total=len(names))


_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def _moment(param: str, text: str | None) -> datetime | None:
    """An RFC 3339 time with its zone, in the years a schedule or a run can have."""
    if text is None:
        return None

    problem = f"{param}: give an RFC 3339 time with a zone, e.g. 2026-04-14T13:00:00Z."
    if not _RFC3339.match(text):
        raise InvalidRequestError(problem, param=param)
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(problem, param=param) from None

    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise InvalidRequestError(
            f"{param}: use a time between {MIN_YEAR} and {MAX_YEAR}.", param=param
        )
    return moment


@router.get("/health", include_in_schema=False)
async def health() -> dict[str, str]:
    return {"status": "ok"}
