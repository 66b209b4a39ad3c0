"""A small MCP server for tests, built on the MCP Python SDK.

    python mcp_fixture_server.py stdio PIDFILE
    python mcp_fixture_server.py http PORT TOKEN

Its tools: `echo` answers at once; `hang` writes the pids of the server and of a
child process it starts to PIDFILE, then never answers. Over HTTP it refuses any
request without `Authorization: Bearer TOKEN`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.responses import JSONResponse

server = MCPServer("workjet-fixture")
PIDFILE = sys.argv[2] if len(sys.argv) > 2 else os.devnull


@server.tool()
def echo(text: str) -> str:
    """Return the text it is given."""
    return f"echo: {text}"


@server.tool()
async def hang() -> str:
    """Start a child process, then never answer."""
    child = subprocess.Popen(["sleep", "600"])
    with open(PIDFILE, "w") as handle:
        handle.write(f"{os.getpid()} {child.pid}\n")
    await asyncio.sleep(3600)
    return "unreachable"


def _guarded(app: Any, token: str) -> Callable[..., Awaitable[None]]:
    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers") or [])
        wanted = f"Bearer {token}".encode()
        if scope["type"] == "http" and headers.get(b"authorization") != wanted:
            await JSONResponse({"error": "unauthorized"}, 401)(scope, receive, send)
            return
        await app(scope, receive, send)

    return guarded


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        app = _guarded(server.streamable_http_app(), sys.argv[3])
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
