"""One model turn through the `anthropic` SDK, with fallback along a tier's models.

The SDK already retries 429, 529 and 5xx answers with backoff that honours
`retry-after`. When it gives up on a model that is overloaded or rate limited, the
next model of the tier is tried; any other error ends the run, since another model
would fail the same way (a bad request, a wrong key).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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


async def complete(
    client: anthropic.AsyncAnthropic,
    candidates: list[str],
    system_prompt: str,
    user_message: str,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> ModelReply:
    """Ask the first model of `candidates` that answers, falling back on capacity."""
    failures: list[str] = []

    for model in candidates:
        try:
            message = await client.messages.create(
                model=model,
                max_tokens=max_tokens,
                system=system_prompt,
                messages=[{"role": "user", "content": user_message}],
            )
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

        return ModelReply(
            model=message.model or model,
            text=text_of(message),
            stop_reason=message.stop_reason,
            usage=usage_of(message),
        )

    raise ModelCallError("no model could answer: " + "; ".join(failures))


def _short(error: anthropic.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        detail = body.get("error")
        if isinstance(detail, dict) and detail.get("message"):
            return str(detail["message"])[:200]
    return str(error.message)[:200]
