"""Slack delivery: the run's output as Block Kit sections through chat.postMessage.

Slack caps a section's text at 3,000 characters and, without documenting it,
refuses a message whose blocks hold about 12,000 characters of text in all
(`msg_blocks_too_long`, slackapi/bolt-js#2509). Long output is therefore cut into
sections at line breaks (then at spaces), and the sections into as many messages
as needed, posted in order. Lengths are counted in UTF-16 code units, as Slack
counts them.

Slack answers most errors with HTTP 200 and `ok: false` (`not_in_channel`,
`channel_not_found`); slack-sdk raises `SlackApiError` for those and for HTTP
errors alike, and none of them is ever reported as delivered. A 429 is retried
after the `Retry-After` Slack sends, when that is within `MAX_RETRY_AFTER_SECONDS`;
5xx answers and network errors are retried with backoff.
"""

from __future__ import annotations

import asyncio
import http.client
from datetime import UTC, datetime
from typing import Any, Literal

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from blocks.channels import WorkjetSlackCredentials
from flows.mrkdwn import escape, to_mrkdwn
from flows.record import Delivery, timestamp

SECTION_LIMIT = 3_000
MESSAGE_TEXT_LIMIT = 10_000
MESSAGE_SECTION_LIMIT = 40
MAX_RETRY_AFTER_SECONDS = 30.0
_FENCE = "```"

_HINTS = {
    "not_in_channel": "invite the Slack app to the channel",
    "channel_not_found": "no such channel, or the Slack app cannot see it",
    "is_archived": "the channel is archived",
    "invalid_auth": "the Slack token is not valid",
    "not_authed": "no Slack token was sent",
    "token_revoked": "the Slack token was revoked",
    "missing_scope": "the Slack app needs the chat:write scope",
}

# The wait between attempts, a name of its own so that tests can observe it.
_pause = asyncio.sleep


def slack_length(text: str) -> int:
    """Characters as Slack counts them: UTF-16 code units."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def split_sections(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Cut mrkdwn into sections of at most `limit`, at line breaks where possible.

    A code block cut in two is closed at the end of one section and opened again
    at the start of the next, so both halves still show as code.
    """
    sections: list[str] = []
    lines: list[str] = []
    size = 0
    in_fence = False

    for line in _pieces(text, limit - 2 * (len(_FENCE) + 1)):
        after = in_fence != _is_fence(line)
        closing = len(_FENCE) + 1 if after else 0
        if lines and size + 1 + slack_length(line) + closing > limit:
            sections.append("\n".join([*lines, _FENCE] if in_fence else lines))
            lines = [_FENCE] if in_fence else []
            size = len(_FENCE) if in_fence else 0
        size += slack_length(line) + (1 if lines else 0)
        lines.append(line)
        in_fence = after

    sections.append("\n".join(lines))
    return [section.strip("\n") for section in sections if section.strip()]


def group_messages(sections: list[str]) -> list[list[str]]:
    """Consecutive sections, as many per message as Slack takes."""
    messages: list[list[str]] = []
    current: list[str] = []
    size = 0

    for section in sections:
        length = slack_length(section)
        full = len(current) == MESSAGE_SECTION_LIMIT
        if current and (full or size + length > MESSAGE_TEXT_LIMIT):
            messages.append(current)
            current, size = [], 0
        current.append(section)
        size += length

    if current:
        messages.append(current)
    return messages


def slack_messages(output: str, automation_name: str) -> list[dict[str, Any]]:
    """The chat.postMessage arguments (less the channel) that carry the output."""
    messages = group_messages(split_sections(to_mrkdwn(output)))
    name = " ".join(automation_name.split())
    payloads: list[dict[str, Any]] = []

    for number, sections in enumerate(messages, start=1):
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}}
            for text in sections
        ]
        if number == 1:
            heading = {"type": "mrkdwn", "text": f"*{escape(name)}*"}
            blocks.insert(0, {"type": "context", "elements": [heading]})
        part = f" ({number}/{len(messages)})" if len(messages) > 1 else ""
        payloads.append(
            {
                "text": f"{name}{part}",
                "blocks": blocks,
                "unfurl_links": False,
                "unfurl_media": False,
            }
        )
    return payloads


async def deliver_slack(
    channel: str,
    output: str,
    automation_name: str,
    credentials: WorkjetSlackCredentials,
    *,
    max_attempts: int = 3,
) -> Delivery:
    """Post the output to the channel; a Delivery says how it went, it never raises.

    `attempts` is the number of tries of the message that needed the most.
    """
    payloads = slack_messages(output, automation_name)
    client = credentials.get_client()
    most = 0

    for number, payload in enumerate(payloads, start=1):
        attempts, error = await _post(client, channel, payload, max_attempts)
        most = max(most, attempts)
        if error is not None:
            if number > 1:
                error += f" ({number - 1} of {len(payloads)} messages were posted)"
            return _delivery(channel, "failed", most, error)

    return _delivery(channel, "delivered", most, None)


async def _post(
    client: WebClient, channel: str, payload: dict[str, Any], max_attempts: int
) -> tuple[int, str | None]:
    """Post one message with retries: the attempts made, and the error if any."""
    error = "not attempted"

    for attempt in range(1, max_attempts + 1):
        try:
            # slack-sdk's WebClient blocks; a thread keeps the flow's loop free.
            await asyncio.to_thread(client.chat_postMessage, channel=channel, **payload)
        except SlackApiError as refused:
            error, delay = _refusal(refused.response, attempt)
        except (OSError, http.client.HTTPException) as broken:
            error = f"cannot reach Slack ({type(broken).__name__})"
            delay = _backoff(attempt)
        else:
            return attempt, None

        if delay is None:
            return attempt, error
        if attempt < max_attempts:
            await _pause(delay)

    return max_attempts, error


def _refusal(response: SlackResponse, attempt: int) -> tuple[str, float | None]:
    """What Slack's refusal says, and how long to wait before trying again (None:
    do not)."""
    status = response.status_code
    if status == 429:
        wait = _retry_after(response.headers)
        if wait is None or wait > MAX_RETRY_AFTER_SECONDS:
            shown = "an unreadable time" if wait is None else f"{wait:g} s"
            return f"ratelimited (Slack asked to wait {shown})", None
        return "ratelimited", wait
    if status >= 500:
        return f"HTTP {status}", _backoff(attempt)

    code = str(response.get("error") or f"HTTP {status}")
    hint = _HINTS.get(code)
    return (f"{code} ({hint})" if hint else code), None


def _retry_after(headers: dict[str, Any]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(float(value[0] if isinstance(value, list) else value), 0)
            except ValueError:
                return None
    return None


def _backoff(attempt: int) -> float:
    return min(0.5 * 2**attempt, MAX_RETRY_AFTER_SECONDS)


def _delivery(
    channel: str,
    status: Literal["delivered", "failed"],
    attempts: int,
    error: str | None,
) -> Delivery:
    return Delivery(
        type="slack",
        target=channel,
        status=status,
        attempts=attempts,
        error=error,
        at=timestamp(datetime.now(UTC)),
    )


def _pieces(text: str, width: int) -> list[str]:
    """The lines of the text, a line longer than `width` broken into several."""
    pieces: list[str] = []
    for line in text.split("\n"):
        while slack_length(line) > width:
            cut = _cut(line, width)
            pieces.append(line[:cut].rstrip())
            line = line[cut:].lstrip()
        pieces.append(line)
    return pieces


def _cut(line: str, width: int) -> int:
    """Where to break an over-long line: at a space, never inside `<...>` or an
    `&...;` escape, and after at least one character."""
    end = _fit(line, width)
    space = line.rfind(" ", 0, end + 1)
    if space > end // 2:
        end = space

    opening = line.rfind("<", 0, end)
    if opening > 0 and line.find(">", opening, end) == -1:
        end = opening
    ampersand = line.rfind("&", 0, end)
    if ampersand > 0 and end - ampersand < 6 and ";" not in line[ampersand:end]:
        end = ampersand
    return max(end, 1)


def _fit(text: str, width: int) -> int:
    """The longest prefix of the text, in characters, that is `width` units long."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > width:
            return index
    return len(text)


def _is_fence(line: str) -> bool:
    return line.lstrip(" >").startswith(_FENCE)
