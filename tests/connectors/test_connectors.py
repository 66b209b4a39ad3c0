"""Opening connectors: which tools are offered and under what names, both
transports, and what a tool result becomes for the model."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import mcp_types
import pytest
from anthropic.types import Message, TextBlock, ToolUseBlock, Usage
from prefect.types import SecretDict

from blocks.connectors import WorkjetMcpConnector
from flows.connectors import (
    EMPTY_RESULT,
    ConnectorError,
    model_tool_name,
    open_connectors,
    result_content,
)
from flows.model import echo_of
from tests.connectors.conftest import FIXTURE_SERVER

API_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """The fixture server over streamable HTTP; it wants `Bearer s3cret-token`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, str(FIXTURE_SERVER), "http", str(port), "s3cret-token"]
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


class TestOfferedTools:
    async def test_tools_are_named_for_their_connector_and_filtered(
        self, filesystem: WorkjetMcpConnector, git: WorkjetMcpConnector
    ) -> None:
        filesystem.include_tools = ["read_text_file", "list_directory", "no_such"]
        git.exclude_tools = ["git_commit", "git_add", "git_reset"]

        async with open_connectors(
            [("filesystem", filesystem), ("git", git)]
        ) as toolbox:
            names = [tool.name for tool in toolbox.tools]

        assert names[:2] == ["filesystem__read_text_file", "filesystem__list_directory"]
        assert "git__git_log" in names
        assert not {"git__git_commit", "git__git_add", "git__git_reset"} & set(names)
        assert all(API_TOOL_NAME.match(name) for name in names)

    def test_names_fit_the_messages_api_even_for_odd_or_long_tool_names(
        self,
    ) -> None:
        taken: set[str] = set()
        odd = model_tool_name("docs", "search.files v2", taken)
        long = model_tool_name("a-very-long-connector-id", "x" * 80, taken)
        clash = model_tool_name("docs", "search_files_v2", {odd})

        assert odd == "docs__search_files_v2"
        assert len(long) == 64 and long.startswith("a-very-long-connector-id__x")
        assert clash != odd
        assert all(API_TOOL_NAME.match(name) for name in (odd, long, clash))


class TestHttpTransport:
    async def test_calls_a_streamable_http_server_with_its_secret_headers(
        self, http_server: str
    ) -> None:
        connector = WorkjetMcpConnector(
            transport="http",
            url=http_server,
            headers=SecretDict({"Authorization": "Bearer s3cret-token"}),
            exclude_tools=["hang"],
        )

        async with open_connectors([("remote", connector)]) as toolbox:
            outcome = await toolbox.call("remote__echo", {"text": "hello"}, budget=30)

        assert [tool.name for tool in toolbox.tools] == ["remote__echo"]
        assert outcome.content == [{"type": "text", "text": "echo: hello"}]
        assert (outcome.connector, outcome.tool, outcome.failed) == (
            "remote",
            "echo",
            False,
        )

    async def test_a_refused_header_fails_the_start_without_showing_it(
        self, http_server: str
    ) -> None:
        connector = WorkjetMcpConnector(
            transport="http",
            url=http_server,
            headers=SecretDict({"Authorization": "Bearer wrong-token-value"}),
            startup_timeout_seconds=10,
        )

        with pytest.raises(ConnectorError, match="connector 'remote'") as failure:
            async with open_connectors([("remote", connector)]):
                pass

        assert "wrong-token-value" not in str(failure.value)


class TestResultContent:
    def test_empty_text_is_dropped_and_an_empty_result_says_so(self) -> None:
        items = [mcp_types.TextContent(type="text", text="  ")]

        assert result_content(items) == [{"type": "text", "text": EMPTY_RESULT}]

    def test_images_structured_content_and_resources_become_blocks(self) -> None:
        image = mcp_types.ImageContent(type="image", data="aGk=", mime_type="image/png")
        link = mcp_types.ResourceLink(type="resource_link", name="n", uri="file:///a")

        blocks = result_content([image, link])
        structured = result_content([], structured={"count": 3})

        assert blocks[0] == {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "aGk="},
        }
        assert blocks[1] == {"type": "text", "text": "[resource file:///a]"}
        assert structured == [{"type": "text", "text": '{"count": 3}'}]

    def test_a_huge_result_is_cut_and_says_how_long_it_was(self) -> None:
        items = [mcp_types.TextContent(type="text", text="x" * 250_000)]

        (block,) = result_content(items)

        assert len(block["text"]) < 100_100
        assert block["text"].endswith("[cut: the result was 250000 characters]")


class TestEcho:
    def test_the_assistant_echo_never_carries_an_empty_text_block(self) -> None:
        message = Message(
            id="msg_1",
            type="message",
            role="assistant",
            model="claude-sonnet-4-5",
            content=[
                TextBlock(type="text", text=""),
                ToolUseBlock(type="tool_use", id="toolu_1", name="a__b", input={}),
            ],
            stop_reason="tool_use",
            usage=Usage(input_tokens=1, output_tokens=1),
        )

        echo: list[dict[str, Any]] = echo_of(message)

        assert echo == [
            {"type": "tool_use", "id": "toolu_1", "name": "a__b", "input": {}}
        ]
