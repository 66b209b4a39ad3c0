"""The model step of a run: resolve the model, open the connectors, run the loop.

A run is a conversation. The model answers, or asks for tools; each call goes to
the automation's MCP connectors and its result goes back, until the model ends its
turn. The loop is bounded by a number of turns and by a wall-clock budget for the
whole step, connectors' start-up included; the tokens of every turn are counted,
and the automation's caps on tokens and cost are checked after every model turn,
before the tool calls it asks for.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anthropic
import anyio
from prefect import get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError

from blocks.catalog import CATALOG_DOCUMENT_NAME, UnknownModelError, WorkjetModelCatalog
from blocks.connectors import WorkjetMcpConnector
from flows.connectors import ConnectorError, Toolbox, open_connectors
from flows.model import (
    DEFAULT_MAX_TOKENS,
    ModelTurn,
    ToolUse,
    build_client,
    complete_turn,
)
from flows.record import RunRecord, ToolCall, timestamp

TRUNCATION_NOTE = "\n\n_(Output truncated: the model reached its output token limit.)_"
MAX_TURNS_VARIABLE = "WORKJET_AGENT_MAX_TURNS"
TIME_BUDGET_VARIABLE = "WORKJET_AGENT_TIME_BUDGET_SECONDS"
DEFAULT_MAX_TURNS = 20
DEFAULT_TIME_BUDGET_SECONDS = 900.0

Json = dict[str, Any]


class AgentError(RuntimeError):
    """The model step could not finish; the message is the run's `error`."""


class NotServedError(AgentError):
    """The automation names something this build cannot run."""


class BudgetExceededError(AgentError):
    """The run reached one of its caps; `output` is what the model said so far."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class AgentLimits:
    """How far one run's loop may go: model turns, seconds for the whole step, and
    the automation's own caps on tokens and cost (None: no cap)."""

    max_turns: int = DEFAULT_MAX_TURNS
    time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS
    max_tokens: int | None = None
    max_cost_usd: float | None = None

    @classmethod
    def from_environment(cls) -> AgentLimits:
        return cls(
            max_turns=int(os.environ.get(MAX_TURNS_VARIABLE, DEFAULT_MAX_TURNS)),
            time_budget_seconds=float(
                os.environ.get(TIME_BUDGET_VARIABLE, DEFAULT_TIME_BUDGET_SECONDS)
            ),
        )


async def load_catalog() -> WorkjetModelCatalog:
    """The operator's catalogue from Prefect, or the built-in defaults."""
    try:
        return await WorkjetModelCatalog.aload(CATALOG_DOCUMENT_NAME)
    except ValueError:
        return WorkjetModelCatalog()


def user_message(now: datetime) -> str:
    return (
        "Carry out your instructions now and reply with the result only."
        f" The time is {timestamp(now)}."
    )


async def load_connectors(ids: list[str]) -> list[tuple[str, WorkjetMcpConnector]]:
    """The automation's connector blocks, secrets included, in the order named."""
    loaded: list[tuple[str, WorkjetMcpConnector]] = []
    for connector_id in ids:
        try:
            loaded.append((connector_id, await WorkjetMcpConnector.aload(connector_id)))
        except ValueError:
            raise AgentError(
                f"connector '{connector_id}' is not configured any more; configure a"
                f" 'Workjet MCP Connector' block named '{connector_id}' or remove it"
                " from the automation's tools"
            ) from None
    return loaded


async def produce_output(
    system_prompt: str,
    model: str,
    tools: list[str],
    record: RunRecord,
    limits: AgentLimits | None = None,
) -> str:
    catalog = await load_catalog()
    try:
        candidates = catalog.candidates(model)
    except UnknownModelError as unknown:
        raise NotServedError(f"model {unknown} is not in the model catalogue") from None

    connectors = await load_connectors(tools)
    agent = Agent(
        build_client(),
        catalog,
        candidates,
        record,
        limits or AgentLimits.from_environment(),
    )
    try:
        return await agent.run(system_prompt, connectors)
    finally:
        await publish_transcript(record)


class Agent:
    """One run's conversation with the model, and the tool calls it asks for."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        catalog: WorkjetModelCatalog,
        candidates: list[str],
        record: RunRecord,
        limits: AgentLimits,
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.candidates = candidates
        self.record = record
        self.limits = limits
        self.deadline = 0.0
        self.said: list[str] = []

    async def run(
        self, system_prompt: str, connectors: list[tuple[str, WorkjetMcpConnector]]
    ) -> str:
        budget = self.limits.time_budget_seconds
        self.deadline = time.monotonic() + budget
        try:
            with anyio.fail_after(budget):
                async with open_connectors(connectors) as toolbox:
                    return await self._converse(system_prompt, toolbox)
        except TimeoutError:
            raise AgentError(
                f"the run went past its time budget of {budget:g} s"
                f" ({TIME_BUDGET_VARIABLE})"
            ) from None
        except ConnectorError as error:
            raise AgentError(str(error)) from error

    async def _converse(self, system_prompt: str, toolbox: Toolbox) -> str:
        messages: list[Json] = [
            {"role": "user", "content": user_message(datetime.now(UTC))}
        ]
        tools = [tool.as_param() for tool in toolbox.tools]

        for number in range(1, self.limits.max_turns + 1):
            turn = await complete_turn(
                self.client,
                self._preferred_models(),
                system_prompt,
                messages,
                tools,
                max_tokens=DEFAULT_MAX_TOKENS,
            )
            self._account(turn)
            final = turn.stop_reason != "tool_use" or not turn.tool_uses
            self._check_caps(final)
            if final:
                return _output_of(turn)
            if number == self.limits.max_turns:
                break  # no model turn is left to read what the tools would return

            messages.append({"role": "assistant", "content": turn.content})
            results = await self._call_tools(toolbox, turn.tool_uses)
            messages.append({"role": "user", "content": results})

        raise AgentError(
            f"the model was still asking for tools after {self.limits.max_turns}"
            f" turns, the limit ({MAX_TURNS_VARIABLE})"
        )

    def _preferred_models(self) -> list[str]:
        """The model that answered last goes first: one overloaded model should not
        cost every later turn its retries."""
        last = self.record.model
        if last not in self.candidates:
            return self.candidates
        return [last, *(model for model in self.candidates if model != last)]

    def _account(self, turn: ModelTurn) -> None:
        record = self.record
        record.model = turn.model
        record.tokens_input += turn.usage.input
        record.tokens_output += turn.usage.output
        record.cache_write_tokens += turn.usage.cache_write
        record.cache_read_tokens += turn.usage.cache_read
        cost = self.catalog.estimate_cost(turn.model, turn.usage)
        record.estimated_cost = round(record.estimated_cost + cost, 6)
        record.stop_reason = turn.stop_reason
        record.has_output = bool(turn.text.strip())
        if turn.text.strip():
            self.said.append(_output_of(turn))

    def _check_caps(self, final: bool) -> None:
        """Stop once a cap is passed, or reached with another model turn to come:
        that turn could only add to it."""
        limits = self.limits
        record = self.record
        tokens = (
            record.tokens_input
            + record.cache_write_tokens
            + record.cache_read_tokens
            + record.tokens_output
        )
        cost = record.estimated_cost
        problem = None
        if limits.max_tokens is not None and _past(tokens, limits.max_tokens, final):
            problem = f"maxTokens {limits.max_tokens} reached ({tokens} used)"
        elif limits.max_cost_usd is not None and _past(
            cost, limits.max_cost_usd, final
        ):
            problem = f"maxCostUsd {limits.max_cost_usd:g} reached ({cost:g} used)"
        if problem is None:
            return

        output = "\n\n".join(self.said)
        record.has_output = bool(output.strip())
        raise BudgetExceededError(f"budget_exceeded: {problem}", output)

    async def _call_tools(self, toolbox: Toolbox, uses: list[ToolUse]) -> list[Json]:
        logger = run_logger()
        results: list[Json] = []

        for use in uses:
            remaining = self.deadline - time.monotonic()
            outcome = await toolbox.call(use.name, use.input, remaining)
            self.record.tool_calls.append(
                ToolCall(
                    connector=outcome.connector,
                    tool=outcome.tool,
                    duration=outcome.duration_ms,
                    failed=outcome.failed,
                    error=outcome.error,
                )
            )
            logger.info(
                "tool call connector=%s tool=%s ms=%d failed=%s",
                outcome.connector,
                outcome.tool,
                outcome.duration_ms,
                str(outcome.failed).lower(),
            )
            result: Json = {
                "type": "tool_result",
                "tool_use_id": use.id,
                "content": outcome.content,
            }
            if outcome.failed:
                result["is_error"] = True
            results.append(result)
        return results


def _past(used: float, cap: float, final: bool) -> bool:
    return used > cap or (not final and used >= cap)


def _output_of(turn: ModelTurn) -> str:
    if turn.stop_reason == "max_tokens":
        return turn.text + TRUNCATION_NOTE
    return turn.text


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a flow; the module's logger elsewhere (tests)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


async def publish_transcript(record: RunRecord) -> None:
    """The run's tool calls as a table in the Prefect UI, beside its output.

    A table, not markdown: the run's one markdown artifact is its record.
    """
    if not record.tool_calls or FlowRunContext.get() is None:
        return

    rows = [
        {
            "call": index,
            "connector": call.connector,
            "tool": call.tool,
            "ms": call.duration,
            "failed": call.failed,
            "error": call.error or "",
        }
        for index, call in enumerate(record.tool_calls, start=1)
    ]
    try:
        await acreate_table_artifact(table=rows, description="Workjet tool calls")
    except Exception as error:
        run_logger().warning("tool call table not saved error=%s", type(error).__name__)
