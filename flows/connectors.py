"""An automation's MCP connectors for one run: open them, offer and call their tools.

Each connector is held open by an asyncio task of its own: the SDK's transports are
anyio task groups, which one task must enter and leave, so they cannot be entered
under a start-up timeout and left later by the run. The run talks to the server
through the client and tells the task when to close. All tasks are closed through
one `AsyncExitStack`, so a failed start, a timeout, an error or a cancellation ends
with every server stopped: the SDK closes a stdio server's stdin, then terminates
its whole process group (each server is started in a session of its own).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

import anyio
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from blocks.connectors import WorkjetMcpConnector

logger = logging.getLogger(__name__)

SEPARATOR = "__"
MAX_TOOL_NAME = 64
MAX_TOOL_PAGES = 20
MAX_RESULT_CHARS = 100_000
# The SDK's stdio shutdown waits at most 0.5 + 2 + 2 + 2 s; this leaves headroom.
CLOSE_TIMEOUT_SECONDS = 10.0
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
EMPTY_RESULT = "(the tool returned no content)"
MARKER_VARIABLE = "WORKJET_CONNECTOR_PROCESS"
STOP_WAIT_SECONDS = 2.0
_UNSAFE_NAME = re.compile(r"[^a-zA-Z0-9_-]")

Json = dict[str, Any]


class ConnectorError(RuntimeError):
    """A connector could not be started or listed; the message names it."""


@dataclass(frozen=True)
class OfferedTool:
    """One MCP tool as the model sees it, and where it really lives."""

    name: str
    connector: str
    tool: str
    description: str
    input_schema: Json

    def as_param(self) -> Json:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }


@dataclass(frozen=True)
class ToolOutcome:
    """A finished call: content for the model, and what the run record keeps.

    `error` is in our own words (a timeout, a broken connection), never the
    server's text, which may quote the call's arguments.
    """

    connector: str
    tool: str
    content: list[Json]
    failed: bool
    error: str | None
    duration_ms: int


def model_tool_name(connector: str, tool: str, taken: set[str]) -> str:
    """`filesystem__read_file`: unique, and within what the Messages API accepts."""
    name = f"{connector}{SEPARATOR}{_UNSAFE_NAME.sub('_', tool)}"
    if len(name) <= MAX_TOOL_NAME and name not in taken:
        return name

    digest = hashlib.sha256(f"{connector}/{tool}".encode()).hexdigest()[:8]
    return f"{name[: MAX_TOOL_NAME - 9]}_{digest}"


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _leaf(error: BaseException) -> BaseException:
    """The first real error inside the exception groups that anyio raises."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


class _Connection:
    """One connector's MCP client, held open by a task of its own."""

    def __init__(self, connector_id: str, block: WorkjetMcpConnector) -> None:
        self.id = connector_id
        self.block = block
        self.client: Client | None = None
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._errlog = cast(TextIO, tempfile.TemporaryFile(mode="w+"))  # noqa: SIM115
        self._marker = uuid.uuid4().hex

    async def open(self) -> list[Any]:
        """Start the server and list the tools it offers (MCP `Tool`s)."""
        self._task = asyncio.create_task(self._hold(), name=f"mcp-{self.id}")
        timeout = self.block.startup_timeout_seconds
        try:
            with anyio.fail_after(timeout):
                await asyncio.shield(self._ready)
                return await self._list_tools()
        except TimeoutError:
            raise ConnectorError(
                f"connector '{self.id}' did not start within {timeout:g} s"
            ) from None
        except Exception as error:
            raise ConnectorError(
                f"connector '{self.id}' failed to start: {self._why(error)}"
            ) from error

    async def _hold(self) -> None:
        try:
            async with self._transport() as client:
                self.client = client
                self._ready.set_result(None)
                await self._closing.wait()
        except BaseException as error:
            if not self._ready.done():
                if isinstance(error, Exception):
                    self._ready.set_exception(error)
                else:
                    self._ready.cancel()
            raise

    @asynccontextmanager
    async def _transport(self) -> AsyncIterator[Client]:
        block = self.block
        if block.transport == "stdio":
            assert block.command is not None
            server = StdioServerParameters(
                command=block.command,
                args=block.args,
                env={**block.environment(), MARKER_VARIABLE: self._marker},
                cwd=block.cwd,
            )
            async with Client(stdio_client(server, errlog=self._errlog)) as client:
                yield client
            return

        assert block.url is not None
        timeout = httpx2.Timeout(
            block.call_timeout_seconds, connect=block.startup_timeout_seconds
        )
        async with (
            httpx2.AsyncClient(headers=block.header_values(), timeout=timeout) as http,
            Client(streamable_http_client(block.url, http_client=http)) as client,
        ):
            yield client

    async def _list_tools(self) -> list[Any]:
        assert self.client is not None
        found: list[Any] = []
        cursor: str | None = None

        for _ in range(MAX_TOOL_PAGES):
            page = await self.client.list_tools(cursor=cursor)
            found.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break

        return [tool for tool in found if self.block.offers(tool.name)]

    def _why(self, error: BaseException) -> str:
        """A short reason, with the last line the server wrote to stderr."""
        leaf = _leaf(error)
        reason = str(leaf) or type(leaf).__name__
        self._errlog.flush()
        self._errlog.seek(0)
        lines = [line for line in self._errlog.read()[-4000:].splitlines() if line]
        if lines:
            reason += f" (stderr: {lines[-1][:300]})"
        return scrub(reason, self.block.secret_values())

    async def call(self, tool: str, arguments: Json, timeout: float) -> Any:
        if self.client is None or self._task is None or self._task.done():
            raise ConnectionError("the connection to the server is closed")
        with anyio.fail_after(timeout):
            return await self.client.call_tool(tool, arguments)

    async def close(self) -> None:
        """Stop the server and all it started; never raises, never waits unbounded."""
        self._closing.set()
        with anyio.CancelScope(shield=True):
            await self._end_task()

        # The SDK stops the process group only when its leader outlives stdin; a
        # leader that exits first leaves its children running, so they are found
        # by the marker in their environment.
        stragglers = await stop_marked(self._marker)
        if stragglers:
            logger.warning(
                "stopped %d leftover process(es) connector=%s", stragglers, self.id
            )
        self._errlog.close()

    async def _end_task(self) -> None:
        task = self._task
        if task is None:
            return

        # A server still in its handshake would not see `_closing`.
        started = self._ready.done() and not self._ready.cancelled()
        wait = CLOSE_TIMEOUT_SECONDS if started else 0
        _, pending = await asyncio.wait({task}, timeout=wait)
        if pending:
            task.cancel()
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_SECONDS)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: asyncio would log it otherwise


def marked_processes(marker: str) -> list[int]:
    """Processes whose environment carries the marker (Linux; elsewhere none)."""
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found

    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


async def stop_marked(marker: str) -> int:
    """Kill the marked processes and wait, briefly, until none is running."""
    killed = 0
    for pid in marked_processes(marker):
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except (ProcessLookupError, PermissionError):
            continue

    # A killed process keeps its environment until it is a zombie.
    with anyio.move_on_after(STOP_WAIT_SECONDS):
        while killed and marked_processes(marker):
            await anyio.sleep(0.02)
    return killed


class Toolbox:
    """The tools of a run's open connectors, under names the model can use."""

    def __init__(self) -> None:
        self.tools: list[OfferedTool] = []
        self._routes: dict[str, tuple[_Connection, OfferedTool]] = {}

    def add(self, connection: _Connection, tools: list[Any]) -> None:
        for tool in tools:
            offered = OfferedTool(
                name=model_tool_name(connection.id, tool.name, set(self._routes)),
                connector=connection.id,
                tool=tool.name,
                description=(tool.description or tool.title or tool.name)[:4000],
                input_schema=dict(tool.input_schema or {"type": "object"}),
            )
            self._routes[offered.name] = (connection, offered)
            self.tools.append(offered)

    async def call(self, name: str, arguments: Json, budget: float) -> ToolOutcome:
        """Call a tool, within its connector's timeout and the run's `budget`."""
        started = time.monotonic()
        found = self._routes.get(name)
        if found is None:
            unknown = OfferedTool(name, "", name, "", {})
            return _failure(unknown, started, f"no tool named {name} is offered")

        connection, tool = found
        timeout = max(min(connection.block.call_timeout_seconds, budget), 0.001)
        try:
            result = await connection.call(tool.tool, arguments, timeout)
        except TimeoutError:
            return _failure(tool, started, f"the call timed out after {timeout:g} s")
        except MCPError as error:
            message = scrub(error.message, connection.block.secret_values())
            return _failure(tool, started, "the server refused the call", message)
        except Exception as error:
            reason = f"the call failed: {type(_leaf(error)).__name__}"
            return _failure(tool, started, reason)

        failed = bool(result.is_error)
        return ToolOutcome(
            connector=tool.connector,
            tool=tool.tool,
            content=result_content(result.content, result.structured_content),
            failed=failed,
            error="the tool reported an error" if failed else None,
            duration_ms=_since(started),
        )


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _failure(
    tool: OfferedTool, started: float, error: str, detail: str | None = None
) -> ToolOutcome:
    text = f"Error: {error}." + (f" {detail}" if detail else "")
    return ToolOutcome(
        connector=tool.connector,
        tool=tool.tool,
        content=[{"type": "text", "text": text}],
        failed=True,
        error=error,
        duration_ms=_since(started),
    )


def result_content(items: Sequence[Any], structured: Any = None) -> list[Json]:
    """A tool's MCP content as Messages API blocks; never an empty text block."""
    blocks: list[Json] = []
    budget = MAX_RESULT_CHARS

    for item in items:
        if item.type == "image" and item.mime_type in IMAGE_TYPES:
            source = {"type": "base64", "media_type": item.mime_type, "data": item.data}
            blocks.append({"type": "image", "source": source})
            continue
        text = _item_text(item)
        if text.strip() and budget > 0:
            clipped = text[:budget]
            if len(clipped) < len(text):
                clipped += f"\n[cut: the result was {len(text)} characters]"
            budget -= len(text)
            blocks.append({"type": "text", "text": clipped})

    if not blocks and structured is not None:
        text = json.dumps(structured)[:MAX_RESULT_CHARS]
        blocks.append({"type": "text", "text": text})
    return blocks or [{"type": "text", "text": EMPTY_RESULT}]


def _item_text(item: Any) -> str:
    if item.type == "text":
        return str(item.text)
    if item.type == "resource":
        text = getattr(item.resource, "text", None)
        return str(text) if text else f"[binary resource {item.resource.uri}]"
    if item.type == "resource_link":
        return f"[resource {item.uri}]"
    return f"[{item.type} content not shown]"


@asynccontextmanager
async def open_connectors(
    connectors: Sequence[tuple[str, WorkjetMcpConnector]],
) -> AsyncIterator[Toolbox]:
    """Start every connector and yield their tools; all are stopped on the way out.

    One connector that fails to start fails the whole run, with its id in the
    error, since the automation was written expecting all of its tools.
    """
    toolbox = Toolbox()
    async with AsyncExitStack() as stack:
        for connector_id, block in connectors:
            connection = _Connection(connector_id, block)
            stack.push_async_callback(connection.close)
            toolbox.add(connection, await connection.open())
        yield toolbox
