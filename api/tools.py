"""`GET /v1/tools`: the connector catalogue as Workjet's Tools API lists it, and
which connectors are ready to use here.

The catalogue's entries come first, then connectors configured here under ids of
their own. Readiness is judged without reading a secret: connector blocks are read
with their values obfuscated, which still shows which variables are set.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from prefect.client.orchestration import PrefectClient

from api.errors import ErrorBodyDoc
from api.prefect_calls import prefect_boundary
from api.routes import Organization
from api.schemas import _Response
from blocks.connectors import DEFAULT_CATALOG, CatalogConnector, WorkjetMcpConnector

router = APIRouter(responses=ErrorBodyDoc)

Which = Callable[[str], str | None]


class ToolOut(_Response):
    id: str
    name: str
    category: str
    command: str | None
    required_env_vars: list[str]
    description: str
    configured: bool
    ready: bool
    reason: str | None = None


class ToolList(_Response):
    tools: list[ToolOut]
    total: int


@router.get("/tools", response_model=ToolList)
async def list_tools(organization: Organization, request: Request) -> ToolList:
    client: PrefectClient = request.app.state.service.client
    return await read_tools(client)


@prefect_boundary
async def read_tools(client: PrefectClient) -> ToolList:
    documents = await client.read_block_documents_by_type(
        block_type_slug=WorkjetMcpConnector.get_block_type_slug(),
        include_secrets=False,
    )
    configured = {doc.name: dict(doc.data) for doc in documents if doc.name}
    return tool_list(configured)


def tool_list(
    configured: Mapping[str, dict[str, Any]], which: Which = shutil.which
) -> ToolList:
    """The catalogue, then the other configured connectors, each with readiness."""
    tools = [
        _catalog_tool(entry, configured.get(entry.id), which)
        for entry in DEFAULT_CATALOG
    ]
    known = {entry.id for entry in DEFAULT_CATALOG}

    for connector_id in sorted(set(configured) - known):
        data = configured[connector_id]
        reason = not_ready_reason(data, [], which)
        tools.append(
            ToolOut(
                id=connector_id,
                name=connector_id,
                category="custom",
                command=_command_line(data),
                required_env_vars=[],
                description="A connector configured here.",
                configured=True,
                ready=reason is None,
                reason=reason,
            )
        )
    return ToolList(tools=tools, total=len(tools))


def _catalog_tool(
    entry: CatalogConnector, data: dict[str, Any] | None, which: Which
) -> ToolOut:
    if data is None:
        reason: str | None = (
            f"not configured: save a 'Workjet MCP Connector' block named '{entry.id}'"
        )
    else:
        reason = not_ready_reason(data, entry.required_env_vars, which)
    return ToolOut(
        id=entry.id,
        name=entry.name,
        category=entry.category,
        command=entry.command,
        required_env_vars=entry.required_env_vars,
        description=entry.description,
        configured=data is not None,
        ready=reason is None,
        reason=reason,
    )


def not_ready_reason(
    data: dict[str, Any], required_env_vars: list[str], which: Which
) -> str | None:
    """Why a configured connector cannot run here, or None when it can."""
    if data.get("transport", "stdio") == "http":
        return None if data.get("url") else "no url is configured"

    command = data.get("command")
    if not command:
        return "no command is configured"
    if which(command) is None:
        return f"its command '{command}' is not installed here"

    missing = [
        name for name in required_env_vars if name not in (data.get("env") or {})
    ]
    if missing:
        return f"{', '.join(missing)} is not set in the connector's env"
    return None


def _command_line(data: dict[str, Any]) -> str | None:
    if data.get("transport", "stdio") == "http":
        return None
    if not data.get("command"):
        return None
    return shlex.join([data["command"], *data.get("args", [])])
