"""The model step of a run: resolve the automation's model, ask it, account for it.

Connectors (`tools`) are validated by the API but not run yet, so an automation that
names any fails here with an error that says so rather than running without them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from blocks.catalog import CATALOG_DOCUMENT_NAME, UnknownModelError, WorkjetModelCatalog
from flows.model import DEFAULT_MAX_TOKENS, build_client, complete
from flows.record import RunRecord, timestamp

TRUNCATION_NOTE = "\n\n_(Output truncated: the model reached its output token limit.)_"


class NotServedError(RuntimeError):
    """The automation names something this build cannot run yet."""


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


async def produce_output(
    system_prompt: str, model: str, tools: list[str], record: RunRecord
) -> str:
    if tools:
        raise NotServedError(
            "MCP connectors are not run by this build yet; this automation names "
            + ", ".join(tools)
        )

    catalog = await load_catalog()
    try:
        candidates = catalog.candidates(model)
    except UnknownModelError as unknown:
        raise NotServedError(f"model {unknown} is not in the model catalogue") from None

    reply = await complete(
        build_client(),
        candidates,
        system_prompt,
        user_message(datetime.now(UTC)),
        max_tokens=DEFAULT_MAX_TOKENS,
    )
    record.model = reply.model
    record.tokens_input = reply.usage.input
    record.tokens_output = reply.usage.output
    record.cache_write_tokens = reply.usage.cache_write
    record.cache_read_tokens = reply.usage.cache_read
    record.estimated_cost = catalog.estimate_cost(reply.model, reply.usage)
    record.stop_reason = reply.stop_reason
    record.has_output = bool(reply.text.strip())

    if reply.stop_reason == "max_tokens":
        return reply.text + TRUNCATION_NOTE
    return reply.text
