"""The tool loop end to end: the stand-in model through the real `anthropic` SDK
asks for tools, and real MCP servers answer them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from blocks.catalog import TokenUsage, WorkjetModelCatalog
from blocks.connectors import WorkjetMcpConnector
from flows.agent import Agent, AgentError, BudgetExceededError
from flows.record import RunRecord
from tests.connectors.conftest import alive, directive, leftovers, processes

MakeAgent = Callable[..., tuple[Agent, RunRecord]]


def ask_for(tool: str, **arguments: str) -> str:
    return "Review the docs. " + directive(tool=tool, args=json.dumps(arguments))


class TestToolsOfRealServers:
    async def test_output_quotes_a_file_read_through_the_filesystem_server(
        self,
        make_agent: MakeAgent,
        filesystem: WorkjetMcpConnector,
        docs_root: Path,
    ) -> None:
        agent, record = make_agent()
        prompt = ask_for("filesystem__read_text_file", path=str(docs_root / "guide.md"))

        output = await agent.run(
            prompt + directive(input_tokens=120, output_tokens=30),
            [("filesystem", filesystem)],
        )

        assert "quillfeather-nebula" in output
        assert [(c.connector, c.tool, c.failed) for c in record.tool_calls] == [
            ("filesystem", "read_text_file", False)
        ]
        assert record.tool_calls[0].duration >= 0
        assert (record.tokens_input, record.tokens_output) == (240, 60)

    async def test_output_quotes_history_read_through_the_git_server(
        self,
        make_agent: MakeAgent,
        filesystem: WorkjetMcpConnector,
        git: WorkjetMcpConnector,
        git_repo: Path,
    ) -> None:
        agent, record = make_agent()
        prompt = ask_for("git__git_log", repo_path=str(git_repo))

        output = await agent.run(prompt, [("filesystem", filesystem), ("git", git)])

        assert "walrus-lantern" in output
        assert [(c.connector, c.tool) for c in record.tool_calls] == [
            ("git", "git_log")
        ]
        assert record.model == "claude-sonnet-4-5"
        assert record.estimated_cost > 0

    @pytest.mark.parametrize(
        "path", ["../outside.md", "{tmp}/outside.md", "escape.md", "{root}/escape.md"]
    )
    async def test_filesystem_refuses_paths_that_leave_its_root(
        self,
        make_agent: MakeAgent,
        filesystem: WorkjetMcpConnector,
        docs_root: Path,
        path: str,
    ) -> None:
        agent, record = make_agent()
        path = path.format(tmp=docs_root.parent, root=docs_root)

        output = await agent.run(
            ask_for("filesystem__read_text_file", path=path),
            [("filesystem", filesystem)],
        )

        assert "classified-porcupine" not in output
        assert "(reported as an error)" in output
        assert "Access denied" in output
        assert record.tool_calls[0].failed is True


class TestBounds:
    async def test_a_tool_that_hangs_times_out_and_the_model_is_told(
        self,
        make_agent: MakeAgent,
        fixture_server: Callable[..., WorkjetMcpConnector],
    ) -> None:
        agent, record = make_agent(budget=60)
        server = fixture_server(call_timeout_seconds=1)

        output = await agent.run(ask_for("fixture__hang"), [("fixture", server)])

        assert "(reported as an error)" in output
        assert "timed out after 1 s" in output
        call = record.tool_calls[0]
        assert (call.tool, call.failed) == ("hang", True)
        assert call.error == "the call timed out after 1 s"

    async def test_a_tool_that_hangs_past_the_budget_ends_the_run_in_time(
        self,
        make_agent: MakeAgent,
        fixture_server: Callable[..., WorkjetMcpConnector],
    ) -> None:
        agent, _ = make_agent(budget=4)
        server = fixture_server(call_timeout_seconds=120)
        before = processes()

        with pytest.raises(AgentError, match="time budget of 4 s"):
            await agent.run(ask_for("fixture__hang"), [("fixture", server)])

        assert leftovers(before) == set()

    async def test_a_run_that_fails_mid_tool_leaves_no_process_behind(
        self,
        make_agent: MakeAgent,
        fixture_server: Callable[..., WorkjetMcpConnector],
        tmp_path: Path,
    ) -> None:
        agent, _ = make_agent(budget=120)
        server = fixture_server(call_timeout_seconds=120)
        pidfile = tmp_path / "pids.txt"
        before = processes()

        run = asyncio.create_task(
            agent.run(ask_for("fixture__hang"), [("fixture", server)])
        )
        with anyio.fail_after(60):
            while not pidfile.exists() or not pidfile.read_text().endswith("\n"):
                await asyncio.sleep(0.05)
        server_pid, child_pid = map(int, pidfile.read_text().split())
        assert alive(server_pid) and alive(child_pid), "the tool is mid-call"
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

        assert not alive(server_pid) and not alive(child_pid)
        assert leftovers(before) == set()

    async def test_a_model_that_never_stops_asking_ends_at_the_turn_limit(
        self,
        make_agent: MakeAgent,
        filesystem: WorkjetMcpConnector,
        docs_root: Path,
    ) -> None:
        agent, record = make_agent(max_turns=3)
        prompt = ask_for("filesystem__list_directory", path=str(docs_root))

        with pytest.raises(AgentError, match="still asking for tools after 3 turns"):
            await agent.run(
                prompt + " [standin: tool_loop output_tokens=7]",
                [("filesystem", filesystem)],
            )

        assert len(record.tool_calls) == 2
        assert record.tokens_output == 3 * 7


class TestConnectorFailures:
    async def test_a_connector_that_fails_to_start_fails_the_run_by_name(
        self, make_agent: MakeAgent, tmp_path: Path
    ) -> None:
        pidfile = tmp_path / "child.pid"
        broken = WorkjetMcpConnector(
            command="sh", args=["-c", f"sleep 300 & echo $! > {pidfile}; exit 3"]
        )
        agent, record = make_agent()

        with pytest.raises(AgentError, match="connector 'broken' failed to start"):
            await agent.run("Check. " + directive(), [("broken", broken)])

        assert not alive(int(pidfile.read_text()))
        assert record.tool_calls == []

    async def test_a_connector_that_does_not_start_in_time_is_stopped(
        self, make_agent: MakeAgent
    ) -> None:
        silent = WorkjetMcpConnector(
            command="sleep", args=["300"], startup_timeout_seconds=0.5
        )
        agent, _ = make_agent()
        before = processes()

        with pytest.raises(AgentError, match="'silent' did not start within 0.5 s"):
            await agent.run("Check. " + directive(), [("silent", silent)])

        assert leftovers(before) == set()


def echo_loop(**tokens: int) -> str:
    """A model that calls the fixture's `echo` after every result, with fixed usage."""
    return (
        ask_for("fixture__echo", text="ping")
        + " [standin: tool_loop] "
        + directive(**tokens)
    )


class TestRunCaps:
    async def test_max_tokens_stops_a_tool_loop_before_the_turn_that_passes_it(
        self,
        make_agent: MakeAgent,
        fixture_server: Callable[..., WorkjetMcpConnector],
    ) -> None:
        agent, record = make_agent(max_tokens=1000)
        server = fixture_server(call_timeout_seconds=30)

        with pytest.raises(BudgetExceededError) as stopped:
            await agent.run(
                echo_loop(input_tokens=100, output_tokens=300), [("fixture", server)]
            )

        # 400 and 800 tokens after two turns; the third brings 1200, past the cap,
        # and its tool call is never made.
        assert str(stopped.value) == (
            "budget_exceeded: maxTokens 1000 reached (1200 used)"
        )
        assert len(record.tool_calls) == 2
        assert (record.tokens_input, record.tokens_output) == (300, 900)
        expected = WorkjetModelCatalog().estimate_cost(
            "claude-sonnet-4-5", TokenUsage(input=300, output=900)
        )
        assert record.estimated_cost == pytest.approx(expected)
        assert record.estimated_cost > 0

    async def test_max_tokens_reached_with_a_turn_to_come_stops_there(
        self,
        make_agent: MakeAgent,
        fixture_server: Callable[..., WorkjetMcpConnector],
    ) -> None:
        agent, record = make_agent(max_tokens=800)
        server = fixture_server(call_timeout_seconds=30)

        with pytest.raises(BudgetExceededError, match=r"maxTokens 800 reached \(800"):
            await agent.run(
                echo_loop(input_tokens=100, output_tokens=300), [("fixture", server)]
            )

        assert len(record.tool_calls) == 1

    async def test_a_final_answer_past_max_tokens_fails_and_keeps_its_text(
        self,
        make_agent: MakeAgent,
        fixture_server: Callable[..., WorkjetMcpConnector],
    ) -> None:
        agent, record = make_agent(max_tokens=700)
        server = fixture_server(call_timeout_seconds=30)
        prompt = ask_for("fixture__echo", text="kept-lighthouse") + directive(
            input_tokens=100, output_tokens=300
        )

        with pytest.raises(BudgetExceededError) as stopped:
            await agent.run(prompt, [("fixture", server)])

        assert "maxTokens 700 reached (800 used)" in str(stopped.value)
        assert "echo: kept-lighthouse" in stopped.value.output
        assert record.has_output is True
        assert record.tokens_output == 600

    async def test_max_cost_usd_stops_a_tool_loop_mid_run(
        self,
        make_agent: MakeAgent,
        fixture_server: Callable[..., WorkjetMcpConnector],
    ) -> None:
        per_turn = WorkjetModelCatalog().estimate_cost(
            "claude-sonnet-4-5", TokenUsage(input=1000, output=1000)
        )
        cap = round(per_turn * 2.5, 6)
        agent, record = make_agent(max_cost_usd=cap)
        server = fixture_server(call_timeout_seconds=30)

        with pytest.raises(BudgetExceededError) as stopped:
            await agent.run(
                echo_loop(input_tokens=1000, output_tokens=1000), [("fixture", server)]
            )

        spent = round(per_turn * 3, 6)
        assert str(stopped.value) == (
            f"budget_exceeded: maxCostUsd {cap:g} reached ({spent:g} used)"
        )
        assert record.estimated_cost == pytest.approx(spent)
        assert len(record.tool_calls) == 2
        assert record.has_output is False

    async def test_a_run_within_its_caps_is_not_stopped(
        self,
        make_agent: MakeAgent,
        fixture_server: Callable[..., WorkjetMcpConnector],
    ) -> None:
        agent, record = make_agent(max_tokens=800, max_cost_usd=1.0)
        server = fixture_server(call_timeout_seconds=30)
        prompt = ask_for("fixture__echo", text="fits") + directive(
            input_tokens=100, output_tokens=300
        )

        output = await agent.run(prompt, [("fixture", server)])

        assert "echo: fits" in output
        assert record.tokens_input + record.tokens_output == 800
