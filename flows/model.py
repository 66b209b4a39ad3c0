"""One model turn through the `anthropic` SDK, with fallback along a tier's models.

The SDK already retries 429, 529 and 5xx answers with backoff that honours
`retry-after`. When it gives up on a model that is overloaded or rate limited, the
next model of the tier is tried; any other error ends the run, since another model
would fail the same way (a bad request, a wrong key).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import anthropic
from anthropic.types import Message

from blocks.catalog import TokenUsage

DEFAULT_MAX_TOKENS = 4096
STANDIN_NOTICE = "the local stand-in for Anthropic's Messages API"


class ModelCallError(RuntimeError):
    """No model of the list could answer; the message says why, for the run record."""


@dataclass(frozen=True)
class ModelReply:
    model: str
    text: str
    stop_reason: str | None
    usage: TokenUsage


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class ModelTurn(ModelReply):
    """One turn of a conversation: the reply, and what to send back as its echo."""

    content: list[dict[str, Any]] = field(default_factory=list)
    tool_uses: list[ToolUse] = field(default_factory=list)


def build_client(timeout_seconds: float = 600.0) -> anthropic.AsyncAnthropic:
    """A client for Anthropic, or for the stand-in when no key is configured.

    `ANTHROPIC_BASE_URL` is read by the SDK itself; the service's start command sets
    it to the stand-in's address when `ANTHROPIC_API_KEY` is absent.
    """
    max_retries = int(os.environ.get("WORKJET_MODEL_MAX_RETRIES", "2"))
    return anthropic.AsyncAnthropic(timeout=timeout_seconds, max_retries=max_retries)


def usage_of(message: Message) -> TokenUsage:
    usage = message.usage
    return TokenUsage(
        input=usage.input_tokens or 0,
        output=usage.output_tokens or 0,
        cache_write=usage.cache_creation_input_tokens or 0,
        cache_read=usage.cache_read_input_tokens or 0,
    )


def text_of(message: Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def _is_capacity_error(error: anthropic.APIStatusError) -> bool:
    # 429: rate limited; 529: overloaded. Both say "try elsewhere", nothing else does.
    return error.status_code in (429, 529)


async def complete_turn(
    client: anthropic.AsyncAnthropic,
    candidates: list[str],
    system_prompt: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> ModelTurn:
    """One turn of a conversation: the first model of `candidates` that answers,
    falling back to the next on capacity."""
    request: dict[str, Any] = {
        "max_tokens": max_tokens,
        "system": system_prompt,
        "messages": messages,
    }
    if tools:
        request["tools"] = tools

    model, message = await _create(client, candidates, request)
    tool_uses = [
        ToolUse(block.id, block.name, dict(block.input))
        for block in message.content
        if block.type == "tool_use"
    ]
    return ModelTurn(
        model=message.model or model,
        text=text_of(message),
        stop_reason=message.stop_reason,
        usage=usage_of(message),
        content=echo_of(message),
        tool_uses=tool_uses,
    )


def echo_of(message: Message) -> list[dict[str, Any]]:
    """The reply as the next request's assistant message.

    Empty text blocks are dropped: the API refuses them in a request even though
    it sends them (a reply that goes straight to a tool call often has one).
    """
    echo: list[dict[str, Any]] = []
    for block in message.content:
        if block.type == "text" and block.text.strip():
            echo.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            echo.append(
                {
                    "type": "tool_use",
                    "id": block.id,
                    "name": block.name,
                    "input": block.input,
                }
            )
    return echo


async def _create(
    client: anthropic.AsyncAnthropic, candidates: list[str], request: dict[str, Any]
) -> tuple[str, Message]:
    failures: list[str] = []

    for model in candidates:
        try:
            message = await client.messages.create(model=model, **request)
        except anthropic.APIStatusError as error:
            if not _is_capacity_error(error):
                raise ModelCallError(
                    f"model {model} refused the request ({error.status_code}):"
                    f" {_short(error)}"
                ) from error
            failures.append(f"{model}: {error.status_code} {_short(error)}")
            continue
        except anthropic.APIConnectionError as error:
            failures.append(f"{model}: cannot connect ({type(error).__name__})")
            continue
        return model, message

    raise ModelCallError("no model could answer: " + "; ".join(failures))


def _short(error: anthropic.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        detail = body.get("error")
        if isinstance(detail, dict) and detail.get("message"):
            return str(detail["message"])[:200]
    return str(error.message)[:200]
