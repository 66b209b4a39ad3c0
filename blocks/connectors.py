"""MCP connectors an automation may name in its `tools`.

Each configured connector is a block document whose name is the connector id that
automations use (`filesystem`, `github`, ...). Secrets in the environment or the
headers are Prefect secrets, never plain parameters.

`env` and `headers` are `SecretDict`s rather than dicts of `SecretStr`: Prefect
obfuscates a secret field only where its schema path names a value, so a dict of
`SecretStr` came back in plain text from the API, while a `SecretDict` keeps the
names readable (readiness checks need them) and every value hidden.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, ClassVar, Literal

from prefect.blocks.core import Block
from prefect.types import SecretDict
from pydantic import BaseModel, Field, model_validator

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
    env: SecretDict = Field(
        default_factory=lambda: SecretDict({}),
        description="Environment for the process (stdio), on top of PATH and HOME;"
        " every value is a secret.",
    )
    cwd: str | None = Field(
        default=None, description="Working directory of the process (stdio)."
    )
    url: str | None = Field(
        default=None, description="Streamable HTTP endpoint, e.g. https://host/mcp."
    )
    headers: SecretDict = Field(
        default_factory=lambda: SecretDict({}),
        description="Headers sent to the server (http); every value is a secret.",
    )
    include_tools: list[str] = Field(
        default_factory=list, description="Offer only these tools (empty: all)."
    )
    exclude_tools: list[str] = Field(
        default_factory=list, description="Never offer these tools."
    )
    startup_timeout_seconds: float = Field(
        default=30,
        gt=0,
        description="How long starting the server and listing its tools may take.",
    )
    call_timeout_seconds: float = Field(
        default=60, gt=0, description="How long one tool call may take."
    )

    @model_validator(mode="after")
    def _has_an_address(self) -> WorkjetMcpConnector:
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio connector needs a command")
        if self.transport == "http" and not self.url:
            raise ValueError("an http connector needs a url")
        return self

    def offers(self, tool: str) -> bool:
        """Whether the model may see and call this tool of the server."""
        if self.include_tools and tool not in self.include_tools:
            return False
        return tool not in self.exclude_tools

    def environment(self) -> dict[str, str]:
        return _plain(self.env)

    def header_values(self) -> dict[str, str]:
        return _plain(self.headers)

    def secret_values(self) -> list[str]:
        """Every secret of the connector, so that messages can be scrubbed of them."""
        values = [*self.environment().values(), *self.header_values().values()]
        return [value for value in values if value]


def _plain(secrets: SecretDict) -> dict[str, str]:
    values: dict[str, Any] = secrets.get_secret_value()
    return {name: str(value) for name, value in values.items()}


class CatalogConnector(BaseModel):
    """A connector of the default catalogue, as Workjet's Tools API lists it."""

    id: str
    name: str
    category: str
    command: str = Field(description="How the server starts, as a shell line.")
    required_env_vars: list[str] = Field(default_factory=list)
    description: str
    root_flag: str | None = Field(
        default=None,
        description="How the server is given its root directory: '' for a plain"
        " argument, a flag such as '--repository', or None if it takes none.",
    )

    def connector(
        self, root: str | None = None, env: dict[str, str] | None = None
    ) -> WorkjetMcpConnector:
        """A block for this catalogue entry, confined to `root` where it takes one."""
        program, *args = shlex.split(self.command)
        if root is not None and self.root_flag is not None:
            args += [self.root_flag, root] if self.root_flag else [root]
        return WorkjetMcpConnector(
            command=program, args=args, env=SecretDict(dict(env or {}))
        )


DEFAULT_CATALOG: tuple[CatalogConnector, ...] = (
    CatalogConnector(
        id="filesystem",
        name="Filesystem",
        category="files",
        command="npx -y @modelcontextprotocol/server-filesystem",
        root_flag="",
        description="Read, search, list and write files under one root directory;"
        " paths that leave it (.., absolute paths, symlinks out) are refused.",
    ),
    CatalogConnector(
        id="github",
        name="GitHub",
        category="development",
        command="npx -y @modelcontextprotocol/server-github",
        required_env_vars=["GITHUB_PERSONAL_ACCESS_TOKEN"],
        description="Repositories, files, issues, pull requests and code search on"
        " GitHub, as the owner of the access token.",
    ),
    CatalogConnector(
        id="fetch",
        name="Fetch",
        category="web",
        command="uvx mcp-server-fetch",
        description="Fetch a web page and return its content as Markdown.",
    ),
    CatalogConnector(
        id="memory",
        name="Memory",
        category="knowledge",
        command="npx -y @modelcontextprotocol/server-memory",
        description="A knowledge graph of entities and relations that the agent"
        " can read and extend.",
    ),
    CatalogConnector(
        id="git",
        name="Git",
        category="development",
        command="uvx mcp-server-git",
        root_flag="--repository",
        description="Status, log, diff and show (and commits, unless restricted)"
        " of a local Git repository.",
    ),
)
