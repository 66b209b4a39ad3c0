"""Connectors through the whole stack: a run of the reference example with the
real filesystem server, the tools catalogue, and a connector removed after the
automation was made."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.ids import flow_run_id_of
from tests.integration.conftest import LiveStack, start_run
from tests.integration.test_automations import REFERENCE_EXAMPLE

pytestmark = pytest.mark.integration

FILESYSTEM_SERVER = (
    Path(__file__).resolve().parents[2]
    / "node_modules"
    / ".bin"
    / "mcp-server-filesystem"
)


SAVE = (
    "connector = WorkjetMcpConnector(**json.loads(sys.argv[2]))\n"
    "asyncio.run(connector.asave(sys.argv[1], overwrite=True))\n"
)
DELETE = "asyncio.run(WorkjetMcpConnector.adelete(sys.argv[1]))\n"


def _blocks(live: LiveStack, script: str, *args: str) -> None:
    """Change connector blocks the way an operator would, in a process of its own."""
    live.run_python(
        "import asyncio, json, sys\nfrom blocks import WorkjetMcpConnector\n" + script,
        *args,
    )


def configure(live: LiveStack, connector_id: str, **fields: Any) -> None:
    _blocks(live, SAVE, connector_id, json.dumps(fields))


def remove(live: LiveStack, connector_id: str) -> None:
    _blocks(live, DELETE, connector_id)


@pytest.fixture
def docs(live: LiveStack, tmp_path: Path) -> Iterator[Path]:
    """A folder of Markdown files, served by the `filesystem` connector."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "install.md").write_text(
        "# Install\n\nRun `setup.sh --legacy-ostrich` (removed in 2.0).\n"
    )
    (folder / "faq.md").write_text("# FAQ\n\nNothing here is outdated.\n")
    configure(
        live,
        "filesystem",
        command=str(FILESYSTEM_SERVER),
        args=[str(folder)],
        exclude_tools=["write_file", "edit_file", "move_file"],
    )
    yield folder
    remove(live, "filesystem")


class TestFilesystemEndToEnd:
    def test_reference_example_reads_the_docs_folder_and_records_the_call(
        self,
        live: LiveStack,
        make_automation: Callable[..., dict[str, Any]],
        docs: Path,
    ) -> None:
        read = json.dumps({"path": str(docs / "install.md")})
        example = {
            **REFERENCE_EXAMPLE,
            "tools": ["filesystem"],
            # Slack delivery is another feature; this run is about tools.
            "channels": [],
            "systemPrompt": str(REFERENCE_EXAMPLE["systemPrompt"])
            + f" [standin: tool=filesystem__read_text_file args={read}]"
            + f" (case {uuid.uuid4().hex[:8]})",
        }
        automation = make_automation(**example)

        run_id = start_run(live, automation)
        run = live.wait_for_run(automation["id"], run_id)

        assert run["status"] == "success", run
        assert "legacy-ostrich" in run["output"]
        assert [(c["connector"], c["tool"], c["failed"]) for c in run["toolCalls"]] == [
            ("filesystem", "read_text_file", False)
        ]
        assert isinstance(run["toolCalls"][0]["duration"], int)
        assert run["model"] == "claude-opus-4-5"
        artifacts = live.prefect.post(
            "/artifacts/filter",
            json={
                "artifacts": {"flow_run_id": {"any_": [str(flow_run_id_of(run_id))]}}
            },
        ).json()
        assert sorted(a["type"] for a in artifacts) == ["markdown", "table"]
        # The run's process sends its log lines in batches, the last ones as it
        # exits, which can be after the run is already shown as finished.
        calls: list[str] = []
        deadline = time.monotonic() + 20
        while not calls and time.monotonic() < deadline:
            logs = live.prefect.post(
                "/logs/filter",
                json={"logs": {"flow_run_id": {"any_": [str(flow_run_id_of(run_id))]}}},
            ).json()
            calls = [log["message"] for log in logs if "tool call" in log["message"]]
            if not calls:
                time.sleep(1)
        assert len(calls) == 1
        assert calls[0].startswith(
            "tool call connector=filesystem tool=read_text_file ms="
        )
        assert calls[0].endswith(" failed=false")
        assert not any(str(docs) in log["message"] for log in logs)

    def test_tools_lists_the_catalogue_and_what_is_ready(
        self, live: LiveStack, docs: Path
    ) -> None:
        listing = live.api.get("/tools")
        anonymous = live.api.get("/tools", headers={"Authorization": ""})

        assert listing.status_code == 200
        tools = {tool["id"]: tool for tool in listing.json()["tools"]}
        assert {"filesystem", "github", "fetch", "memory", "git"} <= set(tools)
        assert tools["filesystem"]["configured"] and tools["filesystem"]["ready"]
        assert tools["github"]["ready"] is False
        assert listing.json()["total"] == len(tools)
        assert anonymous.status_code == 401


class TestConnectorGone:
    def test_a_run_fails_naming_a_connector_that_is_no_longer_configured(
        self, live: LiveStack, make_automation: Callable[..., dict[str, Any]]
    ) -> None:
        configure(live, "scratchpad", command="true")
        automation = make_automation(tools=["scratchpad"])
        remove(live, "scratchpad")

        run = live.wait_for_run(automation["id"], start_run(live, automation))

        assert run["status"] == "failure"
        assert "connector 'scratchpad' is not configured any more" in run["error"]
        assert run["toolCalls"] == []
