"""MCP connectors an automation may name in its `tools`.

Each configured connector is a block document whose name is the connector id that
automations use (`filesystem`, `github`, ...). Secrets in the environment or the
headers are Prefect secrets, never plain parameters.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

CONNECTOR_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class WorkjetMcpConnector(Block):
    """How to reach one MCP server and which of its tools to offer the model."""

    _block_type_name: ClassVar[str] = "Workjet MCP Connector"
    _block_type_slug: ClassVar[str] = "workjet-mcp-connector"
    _description: ClassVar[str] = (
        "An MCP server that automations can use as tools. The block's name is the"
        " connector id used in an automation's `tools`."
    )

    transport: Literal["stdio", "http"] = Field(
        default="stdio", description="A local process over stdio, or streamable HTTP."
    )
    command: str | None = Field(default=None, description="Program to start (stdio).")
    args: list[str] = Field(default_factory=list, description="Its arguments (stdio).")
    env: dict[str, SecretStr] = Field(
        default_factory=dict, description="Environment for the process (stdio)."
    )
    url: str | None = Field(default=None, description="Server URL (http).")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Headers sent to the server (http)."
    )
    include_tools: list[str] = Field(
        default_factory=list, description="Offer only these tools (empty: all)."
    )
    exclude_tools: list[str] = Field(
        default_factory=list, description="Never offer these tools."
    )
    startup_timeout_seconds: float = Field(default=30, gt=0)
    call_timeout_seconds: float = Field(default=60, gt=0)
