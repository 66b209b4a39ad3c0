"""The connector catalogue of `GET /v1/tools` and its readiness, without Prefect."""

from __future__ import annotations

from typing import Any

from prefect.types import SecretDict

from api.tools import tool_list
from blocks.connectors import DEFAULT_CATALOG, WorkjetMcpConnector

OBFUSCATED = "********"


def installed(*commands: str) -> Any:
    return lambda command: f"/usr/bin/{command}" if command in commands else None


class TestCatalog:
    def test_lists_workjets_default_connectors_in_the_tools_api_shape(self) -> None:
        listing = tool_list({}, installed()).model_dump(by_alias=True)

        ids = [tool["id"] for tool in listing["tools"]]
        assert ids == ["filesystem", "github", "fetch", "memory", "git"]
        assert listing["total"] == 5
        github = listing["tools"][1]
        assert github["requiredEnvVars"] == ["GITHUB_PERSONAL_ACCESS_TOKEN"]
        assert github["command"] == "npx -y @modelcontextprotocol/server-github"
        assert {"name", "category", "description"} <= set(github)
        assert not github["configured"] and not github["ready"]

    def test_a_configured_connector_is_ready_when_its_command_is_installed(
        self,
    ) -> None:
        data = {"transport": "stdio", "command": "npx", "args": ["-y", "x", "/docs"]}

        ready = tool_list({"filesystem": data}, installed("npx")).tools[0]
        missing = tool_list({"filesystem": data}, installed()).tools[0]

        assert (ready.configured, ready.ready, ready.reason) == (True, True, None)
        assert (missing.configured, missing.ready) == (True, False)
        assert missing.reason == "its command 'npx' is not installed here"

    def test_github_is_not_ready_until_its_token_is_set(self) -> None:
        bare = {"command": "npx", "env": {}}
        with_token = {
            "command": "npx",
            "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": OBFUSCATED},
        }

        before = tool_list({"github": bare}, installed("npx")).tools[1]
        after = tool_list({"github": with_token}, installed("npx")).tools[1]

        assert before.reason == (
            "GITHUB_PERSONAL_ACCESS_TOKEN is not set in the connector's env"
        )
        assert after.ready is True

    def test_connectors_of_ones_own_follow_the_catalogue(self) -> None:
        configured: dict[str, dict[str, Any]] = {
            "wiki": {"transport": "http", "url": "https://wiki.example.com/mcp"},
            "notes": {"command": "notes-mcp", "args": ["--dir", "/srv/notes"]},
        }

        listing = tool_list(configured, installed()).model_dump(by_alias=True)

        notes, wiki = listing["tools"][5:]
        assert (notes["id"], notes["category"]) == ("notes", "custom")
        assert notes["command"] == "notes-mcp --dir /srv/notes"
        assert notes["ready"] is False
        assert (wiki["id"], wiki["command"], wiki["ready"]) == ("wiki", None, True)
        assert listing["total"] == 7


class TestCatalogConnector:
    def test_filesystem_from_the_catalogue_is_confined_to_its_root(self) -> None:
        entry = next(e for e in DEFAULT_CATALOG if e.id == "filesystem")

        block = entry.connector(root="/srv/docs")

        assert block.command == "npx"
        assert block.args == [
            "-y",
            "@modelcontextprotocol/server-filesystem",
            "/srv/docs",
        ]

    def test_git_takes_its_repository_as_a_flag(self) -> None:
        entry = next(e for e in DEFAULT_CATALOG if e.id == "git")

        block = entry.connector(root="/srv/repo")

        assert block.args == ["mcp-server-git", "--repository", "/srv/repo"]


class TestConnectorBlock:
    def test_tool_filters_offer_all_some_or_all_but_some(self) -> None:
        every = WorkjetMcpConnector(command="x")
        some = WorkjetMcpConnector(command="x", include_tools=["read_file"])
        but = WorkjetMcpConnector(command="x", exclude_tools=["write_file"])

        assert every.offers("write_file") and every.offers("read_file")
        assert some.offers("read_file") and not some.offers("write_file")
        assert but.offers("read_file") and not but.offers("write_file")

    def test_secrets_stay_hidden_in_the_block_and_its_repr(self) -> None:
        block = WorkjetMcpConnector(
            command="npx",
            env=SecretDict({"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_value123"}),
        )

        assert "ghp_value123" not in repr(block)
        assert "ghp_value123" not in block.model_dump_json()
        assert block.environment() == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_value123"}
        assert WorkjetMcpConnector.model_json_schema()["secret_fields"] == [
            "env.*",
            "headers.*",
        ]
