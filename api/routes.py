"""The v1 endpoints. Each route checks its input, calls one service method, answers."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from api.errors import AuthenticationError, ErrorBodyDoc
from api.keys import KeyVerifier
from api.schemas import (
    ActivateOut,
    AutomationCreate,
    AutomationList,
    AutomationOut,
    AutomationUpdate,
    ManualRunOut,
    PauseOut,
    RunList,
)
from api.service import AutomationService

router = APIRouter(responses=ErrorBodyDoc)


def _service(request: Request) -> AutomationService:
    service: AutomationService = request.app.state.service
    return service


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
    return organization


Organization = Annotated[str, Depends(_organization)]
Service = Annotated[AutomationService, Depends(_service)]
RunStatus = Literal["success", "failure", "running"]


@router.get("/automations", response_model=AutomationList)
async def list_automations(
    organization: Organization,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=200)] = 200,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AutomationList:
    return await service.list_automations(organization, limit, offset)


@router.post(
    "/automations", status_code=status.HTTP_201_CREATED, response_model=AutomationOut
)
async def create_automation(
    body: AutomationCreate, organization: Organization, service: Service
) -> AutomationOut:
    return await service.create(organization, body)


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
    automation_id: str, organization: Organization, service: Service
) -> PauseOut:
    return await service.pause(organization, automation_id)


@router.post(
    "/automations/{automation_id}/run",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ManualRunOut,
)
async def run_automation_now(
    automation_id: str, organization: Organization, service: Service
) -> ManualRunOut:
    return await service.run_now(organization, automation_id)


@router.get("/automations/{automation_id}/runs", response_model=RunList)
async def list_runs(
    automation_id: str,
    organization: Organization,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    run_status: Annotated[RunStatus | None, Query(alias="status")] = None,
) -> RunList:
    return await service.list_runs(
        organization, automation_id, limit, offset, run_status
    )


@router.get("/health", include_in_schema=False)
async def health() -> dict[str, str]:
    return {"status": "ok"}
