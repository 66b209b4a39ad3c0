"""A local stand-in for Anthropic's Messages API, for tests and key-less demos.

What it is: a small FastAPI app that speaks the Messages API wire format
(`POST /v1/messages`, plain JSON or Server-Sent Events, `GET /v1/models`, the real
error shape and a `request-id` header) well enough that the unmodified `anthropic`
SDK talks to it. Its answers are deterministic text built from the request: the
default reply begins with a line saying it comes from a stand-in, and every HTTP
response carries an `x-standin: true` header.

What it is not: a model. It does not understand the prompt, its token counts are
approximations (about four characters per token), and it checks only the request
rules that client code most often gets wrong. Never present its output as a model's.

Tests script it through directives in the system prompt, written as
`[standin: key=value key=value ...]` (several brackets may appear; later keys win):

    delay=SECONDS            sleep before answering (also before scripted errors)
    error=STATUS times=N     answer STATUS (429, 529, 500, ...) N times for this
                             conversation (system prompt + model), then normally;
                             without times, always
    retry_after=SECONDS      the `retry-after` header of 429 and 529 (default 1)
    overloaded=ID[,ID...]    requests for these model ids always answer 529
    rate_limited=ID[,ID...]  requests for these model ids always answer 429
    reply=TEXT               reply with TEXT, verbatim up to the closing bracket
    reply_chars=N            reply with a deterministic text of exactly N characters
    max_tokens               (flag) cut the reply in half, stop_reason "max_tokens";
                             any reply longer than the request's max_tokens * 4
                             characters is cut there with the same stop_reason
    cache_read=N cache_write=M          report these cache token counts
    input_tokens=N output_tokens=M      report exactly these token counts
    tool=NAME args=JSON      ask for tool NAME (if offered) with input JSON until a
                             tool_result comes back
    tool_loop                (flag) ask for the tool again after every tool_result

Inside a bracket, write `%5D` for `]` and `%5B` for `[`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

Json = dict[str, Any]

STANDIN_NOTICE = "_(stand-in model: no Anthropic API key configured)_"
DEFAULT_MODELS = ("claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5")
MODELS_CREATED_AT = "2025-01-01T00:00:00Z"
CHARS_PER_TOKEN = 4
MEDIA_BLOCK_TOKENS = 800
STREAM_CHUNK_CHARS = 24

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
SCRIPTED_MESSAGES = {
    429: "Rate limited",
    500: "Internal server error",
    529: "Overloaded",
}
RETRY_AFTER_STATUSES = (429, 529)

_STOPWORD_TEXT = """
    about after also been before could each from have into just like more most must
    only other over should some such than that their them then there these they this
    those very were what when where which while will with would your
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


class ApiError(Exception):
    """An error answered in the Messages API's shape."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    @property
    def error_type(self) -> str:
        if self.status in ERROR_TYPES:
            return ERROR_TYPES[self.status]
        return "api_error" if self.status >= 500 else "invalid_request_error"

    def body(self) -> Json:
        return {
            "type": "error",
            "error": {"type": self.error_type, "message": self.message},
        }


def invalid(message: str) -> ApiError:
    return ApiError(400, message)


# ---------------------------------------------------------------------------
# Request validation


def validate_request(body: object, *, require_max_tokens: bool = True) -> Json:
    """Check the rules the real API enforces that clients most often break."""
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")

    model = body.get("model")
    if model is None:
        raise invalid("model: Field required")
    if not isinstance(model, str) or not model:
        raise invalid("model: Input should be a valid string")

    if require_max_tokens:
        _validate_max_tokens(body.get("max_tokens"))
    _validate_system(body.get("system"))
    _validate_messages(body.get("messages"))
    _validate_tools(body.get("tools"))

    if not isinstance(body.get("stream", False), bool):
        raise invalid("stream: Input should be a valid boolean")
    return body


def _validate_max_tokens(value: object) -> None:
    if value is None:
        raise invalid("max_tokens: Field required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid("max_tokens: Input should be a valid integer")
    if value < 1:
        raise invalid("max_tokens: Input should be greater than or equal to 1")


def _validate_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise invalid("system: Input should be a valid string or list")

    for index, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid(f"system.{index}.type: Input should be 'text'")
        _validate_text_block(block, f"system.{index}", scope="system")


def _validate_text_block(block: Json, path: str, scope: str = "messages") -> None:
    text = block.get("text")
    if text is None:
        raise invalid(f"{path}.text: Field required")
    if not isinstance(text, str):
        raise invalid(f"{path}.text: Input should be a valid string")
    if not text:
        raise invalid(f"{scope}: text content blocks must be non-empty")
    if not text.strip():
        raise invalid(f"{scope}: text content blocks must contain non-whitespace text")


def _validate_messages(messages: object) -> None:
    if messages is None:
        raise invalid("messages: Field required")
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list")
    if not messages:
        raise invalid("messages: at least one message is required")

    for index, message in enumerate(messages):
        is_last = index == len(messages) - 1
        _validate_message(message, index, is_last)
    _validate_tool_pairing(messages)


def _validate_message(message: object, index: int, is_last: bool) -> None:
    path = f"messages.{index}"
    if not isinstance(message, dict):
        raise invalid(f"{path}: Input should be a valid dictionary")
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise invalid(f"{path}.role: Input should be 'user' or 'assistant'")

    content = message.get("content")
    if content is None:
        raise invalid(f"{path}.content: Field required")
    if not isinstance(content, str | list):
        raise invalid(f"{path}.content: Input should be a valid string or list")
    if not content and not (is_last and role == "assistant"):
        raise invalid(
            f"{path}: all messages must have non-empty content except for the"
            " optional final assistant message"
        )

    if isinstance(content, list):
        for position, block in enumerate(content):
            _validate_block(block, f"{path}.content.{position}")


def _validate_block(block: object, path: str) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise invalid(f"{path}.type: Field required")

    kind = block["type"]
    if kind == "text":
        _validate_text_block(block, path)
    elif kind == "tool_use":
        if not isinstance(block.get("id"), str) or not isinstance(
            block.get("name"), str
        ):
            raise invalid(f"{path}: tool_use blocks need a string id and name")
        if not isinstance(block.get("input"), dict):
            raise invalid(f"{path}.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        _validate_tool_result(block, path)


def _validate_tool_result(block: Json, path: str) -> None:
    if not isinstance(block.get("tool_use_id"), str):
        raise invalid(f"{path}.tool_use_id: Field required")

    content = block.get("content")
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid(f"{path}.content: Input should be a valid string or list")
    for position, inner in enumerate(content):
        _validate_block(inner, f"{path}.content.{position}")


def _validate_tool_pairing(messages: list[Json]) -> None:
    """Every tool_use must be answered by a tool_result in the very next message."""
    pending: list[str] = []

    for index, message in enumerate(messages):
        blocks = _blocks_of(message)
        if message["role"] == "assistant":
            _require_results_for(pending, [], index - 1)
            pending = [b["id"] for b in blocks if b["type"] == "tool_use"]
            continue

        for position, block in enumerate(blocks):
            if block["type"] == "tool_result" and block["tool_use_id"] not in pending:
                raise invalid(
                    f"messages.{index}.content.{position}: unexpected `tool_use_id`"
                    f" found in `tool_result` blocks: {block['tool_use_id']}. Each"
                    " `tool_result` block must have a corresponding `tool_use` block"
                    " in the previous message."
                )
        answered = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        _require_results_for(pending, answered, index - 1)
        pending = []


def _require_results_for(pending: list[str], answered: list[str], index: int) -> None:
    missing = [tool_id for tool_id in pending if tool_id not in answered]
    if missing:
        raise invalid(
            f"messages.{index}: `tool_use` ids were found without `tool_result`"
            f" blocks immediately after: {', '.join(missing)}. Each `tool_use` block"
            " must have a corresponding `tool_result` block in the next message."
        )


def _validate_tools(tools: object) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list")
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise invalid(f"tools.{index}.name: Field required")


# ---------------------------------------------------------------------------
# Reading the request


def _blocks_of(message: Json) -> list[Json]:
    content = message["content"]
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content


def system_text(request: Json) -> str:
    system = request.get("system")
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    return "\n".join(block["text"] for block in system)


def _block_text(block: Json) -> str:
    kind = block["type"]
    if kind == "text":
        return str(block["text"])
    if kind == "tool_use":
        return f"{block['name']} {json.dumps(block['input'])}"
    if kind == "tool_result":
        return _tool_result_text(block)
    return ""


def _tool_result_text(block: Json) -> str:
    content = block.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(_block_text(inner) for inner in content if inner["type"] == "text")


def _last_user_message(request: Json) -> list[Json]:
    for message in reversed(request["messages"]):
        if message["role"] == "user":
            return _blocks_of(message)
    return []


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def count_input_tokens(request: Json) -> int:
    """About four characters a token; images and documents count a flat amount."""
    parts = [system_text(request)]
    media_blocks = 0

    for message in request["messages"]:
        for block in _blocks_of(message):
            if block["type"] in ("text", "tool_use", "tool_result"):
                parts.append(_block_text(block))
            else:
                media_blocks += 1
    if request.get("tools"):
        parts.append(json.dumps(request["tools"]))

    tokens = estimate_tokens("\n".join(parts)) + media_blocks * MEDIA_BLOCK_TOKENS
    return max(tokens, 1)


# ---------------------------------------------------------------------------
# Directives


class DirectiveError(ValueError):
    """A `[standin: ...]` bracket that cannot be understood."""


@dataclass
class Directives:
    delay: float = 0.0
    error: int | None = None
    times: int | None = None
    retry_after: float = 1.0
    overloaded: tuple[str, ...] = ()
    rate_limited: tuple[str, ...] = ()
    reply: str | None = None
    reply_chars: int | None = None
    max_tokens: bool = False
    cache_read: int = 0
    cache_write: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    tool: str | None = None
    args: Json = field(default_factory=dict)
    tool_loop: bool = False


_BRACKET = re.compile(r"\[standin:([^\]]*)\]")
_KEY = re.compile(r"([A-Za-z_]+)(=?)")
_PLAIN_VALUE = re.compile(r"\S*")
_FLAGS = frozenset({"max_tokens", "tool_loop"})


def _number(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if not math.isfinite(value) or value < 0:
            raise ValueError("must be a finite number, not negative")
        return value

    return parse


def _error_status(text: str) -> int:
    status = int(text)
    if status not in ERROR_TYPES:
        raise ValueError(f"choose one of {sorted(ERROR_TYPES)}")
    return status


def _model_ids(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _json_object(text: str) -> Json:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


_PARSERS: dict[str, Callable[[str], Any]] = {
    "delay": _number(float),
    "error": _error_status,
    "times": _number(int),
    "retry_after": _number(float),
    "overloaded": _model_ids,
    "rate_limited": _model_ids,
    "reply": str,
    "reply_chars": _positive_int,
    "cache_read": _number(int),
    "cache_write": _number(int),
    "input_tokens": _number(int),
    "output_tokens": _number(int),
    "tool": str,
    "args": _json_object,
}


def parse_directives(text: str) -> Directives:
    """Read every `[standin: ...]` bracket of `text`; later keys win."""
    directives = Directives()

    for match in _BRACKET.finditer(text):
        body = _unescape(match.group(1))
        for key, value in _tokens(body):
            _apply(directives, key, value)
    return directives


def _unescape(text: str) -> str:
    return re.sub("%5[dD]", "]", re.sub("%5[bB]", "[", text))


def _tokens(body: str) -> Iterator[tuple[str, str | None]]:
    position = 0

    while True:
        while position < len(body) and body[position].isspace():
            position += 1
        if position >= len(body):
            return

        key_match = _KEY.match(body, position)
        if key_match is None:
            raise DirectiveError(f"cannot read {body[position:]!r}")
        key, has_value = key_match.group(1), bool(key_match.group(2))
        position = key_match.end()

        if not has_value:
            yield key, None
        elif key == "reply":
            # The reply runs to the closing bracket, spaces and all.
            yield key, body[position:].strip()
            return
        else:
            end = _value_end(body, position, key)
            yield key, body[position:end]
            position = end


def _value_end(body: str, position: int, key: str) -> int:
    if key != "args":
        plain = _PLAIN_VALUE.match(body, position)
        assert plain is not None  # \S* always matches
        return plain.end()

    try:
        _, end = json.JSONDecoder().raw_decode(body, position)
    except json.JSONDecodeError as error:
        raise DirectiveError(f"args is not valid JSON: {error.msg}") from error
    return end


def _apply(directives: Directives, key: str, value: str | None) -> None:
    if key in _FLAGS:
        if value is not None:
            raise DirectiveError(f"{key} is a flag and takes no value")
        setattr(directives, key, True)
        return

    if key not in _PARSERS:
        raise DirectiveError(f"unknown directive {key!r}")
    if not value:
        raise DirectiveError(f"{key} needs a value, as in {key}=...")
    try:
        setattr(directives, key, _PARSERS[key](value))
    except ValueError as error:
        raise DirectiveError(f"{key}={value!r}: {error}") from error


# ---------------------------------------------------------------------------
# Scripted faults


def conversation_key(system: str, model: str) -> str:
    return hashlib.sha256(f"{system}\x00{model}".encode()).hexdigest()


class FaultScript:
    """Decides which requests answer a scripted error; counts live in memory."""

    def __init__(self) -> None:
        self._served: dict[str, int] = {}

    def fault_for(
        self, model: str, system: str, directives: Directives
    ) -> ApiError | None:
        if model in directives.overloaded:
            return scripted_error(529, directives, f"model {model} is overloaded")
        if model in directives.rate_limited:
            return scripted_error(429, directives, f"model {model} is rate limited")
        if directives.error is None:
            return None

        key = conversation_key(system, model)
        served = self._served.get(key, 0)
        if directives.times is not None and served >= directives.times:
            return None
        self._served[key] = served + 1
        return scripted_error(directives.error, directives, f"error={directives.error}")


def scripted_error(status: int, directives: Directives, cause: str) -> ApiError:
    headers: dict[str, str] = {}
    if status in RETRY_AFTER_STATUSES:
        headers["retry-after"] = _format_seconds(directives.retry_after)

    summary = SCRIPTED_MESSAGES.get(status, "Scripted error")
    return ApiError(status, f"{summary} (stand-in, scripted: {cause})", headers)


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


# ---------------------------------------------------------------------------
# Composing the reply


def compose_message(request: Json, directives: Directives) -> Json:
    """The whole Message object the real API would return."""
    content, stop_reason = _compose_content(request, directives)

    usage = {
        "input_tokens": _first_set(
            directives.input_tokens, count_input_tokens(request)
        ),
        "output_tokens": _first_set(directives.output_tokens, _output_tokens(content)),
        "cache_creation_input_tokens": directives.cache_write,
        "cache_read_input_tokens": directives.cache_read,
    }
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": request["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def _first_set(override: int | None, computed: int) -> int:
    return computed if override is None else override


def _output_tokens(content: list[Json]) -> int:
    return max(sum(estimate_tokens(_block_text(block)) for block in content), 1)


def _compose_content(request: Json, directives: Directives) -> tuple[list[Json], str]:
    tool_use = _tool_use_block(request, directives)
    if tool_use is not None:
        return [tool_use], "tool_use"

    text = _reply_text(request, directives)
    limit = request["max_tokens"] * CHARS_PER_TOKEN
    if directives.max_tokens:
        limit = min(limit, max(len(text) // 2, 1))
    if len(text) > limit:
        return [{"type": "text", "text": text[:limit]}], "max_tokens"
    return [{"type": "text", "text": text}], "end_turn"


def _tool_use_block(request: Json, directives: Directives) -> Json | None:
    offered = {tool["name"] for tool in request.get("tools") or []}
    if directives.tool is None or directives.tool not in offered:
        return None

    has_result = any(b["type"] == "tool_result" for b in _last_user_message(request))
    if has_result and not directives.tool_loop:
        return None
    return {
        "type": "tool_use",
        "id": f"toolu_{uuid.uuid4().hex[:24]}",
        "name": directives.tool,
        "input": directives.args,
    }


def _reply_text(request: Json, directives: Directives) -> str:
    if directives.reply is not None:
        return directives.reply
    if directives.reply_chars is not None:
        return text_of_length(directives.reply_chars)

    last_user = _last_user_message(request)
    results = [b for b in last_user if b["type"] == "tool_result"]
    if results:
        return _tool_result_reply(request, results)
    user_text = "\n".join(_block_text(b) for b in last_user if b["type"] == "text")
    return findings_reply(system_text(request), user_text)


def text_of_length(length: int) -> str:
    """A deterministic reply of exactly `length` characters."""
    filler = "This is deterministic filler text from the stand-in. "
    text = f"{STANDIN_NOTICE}\n\n"
    text += filler * (length // len(filler) + 1)
    return text[:length]


def findings_reply(system: str, user_text: str) -> str:
    """Markdown with bullets that quote the instructions and the request."""
    words = _salient_words(_BRACKET.sub(" ", system))[:9]
    bullets = [
        f'- The instructions mention "{" ".join(words[start : start + 3])}".'
        for start in range(0, len(words), 3)
    ]
    if not bullets:
        bullets = ["- There were no instructions (no system prompt) to follow."]

    request_line = " ".join(user_text.split())
    if request_line:
        bullets.append(f'- The request reads: "{_clip(request_line, 80)}".')
    else:
        bullets.append("- The request carried no text.")
    return "\n".join([STANDIN_NOTICE, "", "## Findings", "", *bullets])


def _salient_words(text: str) -> list[str]:
    seen: set[str] = set()
    words: list[str] = []

    for word in re.findall(r"[A-Za-z][A-Za-z0-9'-]{3,}", text):
        lowered = word.lower()
        if lowered in STOPWORDS or lowered in seen:
            continue
        seen.add(lowered)
        words.append(word)
    return words


def _tool_result_reply(request: Json, results: list[Json]) -> str:
    names = _tool_names(request)
    bullets = []

    for result in results:
        name = names.get(result["tool_use_id"], "tool")
        quoted = _clip(" ".join(_tool_result_text(result).split()), 200)
        flag = " (reported as an error)" if result.get("is_error") else ""
        bullets.append(f'- The `{name}` tool returned{flag}: "{quoted}".')
    return "\n".join([STANDIN_NOTICE, "", "## Findings", "", *bullets])


def _tool_names(request: Json) -> dict[str, str]:
    return {
        block["id"]: block["name"]
        for message in request["messages"]
        for block in _blocks_of(message)
        if block["type"] == "tool_use"
    }


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ---------------------------------------------------------------------------
# Streaming


def stream_events(message: Json) -> Iterator[str]:
    """The message as the real API streams it, one Server-Sent Event at a time."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {**usage, "output_tokens": min(usage["output_tokens"], 1)}

    yield _sse({"type": "message_start", "message": start})
    yield _sse({"type": "ping"})
    for index, block in enumerate(message["content"]):
        yield from _block_events(index, block)

    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    yield _sse({"type": "message_delta", "delta": delta, "usage": usage})
    yield _sse({"type": "message_stop"})


def _block_events(index: int, block: Json) -> Iterator[str]:
    if block["type"] == "tool_use":
        opening = {**block, "input": {}}
        payload, delta_type, delta_key = (
            json.dumps(block["input"]),
            "input_json_delta",
            "partial_json",
        )
    else:
        opening = {"type": "text", "text": ""}
        payload, delta_type, delta_key = block["text"], "text_delta", "text"

    yield _sse(
        {"type": "content_block_start", "index": index, "content_block": opening}
    )
    for start in range(0, len(payload), STREAM_CHUNK_CHARS):
        chunk = payload[start : start + STREAM_CHUNK_CHARS]
        delta = {"type": delta_type, delta_key: chunk}
        yield _sse({"type": "content_block_delta", "index": index, "delta": delta})
    yield _sse({"type": "content_block_stop", "index": index})


def _sse(event: Json) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"


async def _stream_body(message: Json) -> AsyncIterator[str]:
    for event in stream_events(message):
        yield event


# ---------------------------------------------------------------------------
# Models


def model_entry(model_id: str) -> Json:
    return {
        "type": "model",
        "id": model_id,
        "display_name": display_name(model_id),
        "created_at": MODELS_CREATED_AT,
    }


def display_name(model_id: str) -> str:
    """`claude-opus-4-5` -> `Claude Opus 4.5`; a trailing date is dropped."""
    parts = [part for part in model_id.split("-") if part]
    words = [part.capitalize() for part in parts if not part.isdigit()]
    version = [part for part in parts if part.isdigit() and len(part) < 8]
    return " ".join(words + ([".".join(version)] if version else []))


def configured_models() -> tuple[str, ...]:
    listed = _model_ids(os.environ.get("STANDIN_MODELS", ""))
    return listed or DEFAULT_MODELS


# ---------------------------------------------------------------------------
# The app


async def _read_json(request: Request) -> object:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise invalid("Request body is not valid JSON") from error


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _directives_of(system: str) -> Directives:
    try:
        return parse_directives(system)
    except DirectiveError as error:
        raise invalid(f"stand-in directive error: {error}") from error


def create_app() -> FastAPI:
    """A fresh stand-in; its scripted-error counters live as long as the app."""
    app = FastAPI(
        title="Anthropic Messages API stand-in", docs_url=None, redoc_url=None
    )

    app.middleware("http")(_tag_response)
    _install_error_handlers(app)
    _add_model_routes(app, configured_models())
    _add_message_routes(app, FaultScript())
    return app


def _new_request_id() -> str:
    return f"req_{uuid.uuid4().hex[:24]}"


async def _tag_response(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    request_id = _new_request_id()
    request.state.request_id = request_id

    response = await call_next(request)
    response.headers["request-id"] = request_id
    response.headers["x-standin"] = "true"
    return response


def _add_model_routes(app: FastAPI, models: tuple[str, ...]) -> None:
    @app.get("/health")
    async def health() -> Json:
        return {"status": "ok", "standin": True}

    @app.get("/v1/models")
    async def list_models() -> Json:
        return {
            "data": [model_entry(model_id) for model_id in models],
            "has_more": False,
            "first_id": models[0],
            "last_id": models[-1],
        }

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str) -> Json:
        if model_id not in models:
            raise ApiError(404, f"model: {model_id}")
        return model_entry(model_id)


def _add_message_routes(app: FastAPI, faults: FaultScript) -> None:
    @app.post("/v1/messages/count_tokens")
    async def count_tokens(request: Request) -> Json:
        body = validate_request(await _read_json(request), require_max_tokens=False)
        return {"input_tokens": count_input_tokens(body)}

    @app.post("/v1/messages")
    async def create_message(request: Request) -> Response:
        body = validate_request(await _read_json(request))
        system = system_text(body)
        directives = _directives_of(system)

        if directives.delay:
            await asyncio.sleep(directives.delay)
        fault = faults.fault_for(body["model"], system, directives)
        if fault is not None:
            logger.info("stand-in answers %s for %s", fault.status, body["model"])
            raise fault

        message = compose_message(body, directives)
        logger.info(
            "stand-in answered %s: stop_reason=%s",
            body["model"],
            message["stop_reason"],
        )
        return _message_response(message, stream=bool(body.get("stream")))


def _message_response(message: Json, stream: bool) -> Response:
    if not stream:
        return JSONResponse(message)
    return StreamingResponse(
        _stream_body(message),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache"},
    )


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return _error_response(error)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        message = "Not found" if error.status_code == 404 else str(error.detail)
        return _error_response(ApiError(error.status_code, message))

    async def unexpected(request: Request, error: Exception) -> Response:
        # This runs outside the middleware, so the request id is added here.
        logger.exception("stand-in failed on %s %s", request.method, request.url.path)
        response = _error_response(ApiError(500, "Internal server error (stand-in)"))
        request_id = getattr(request.state, "request_id", None) or _new_request_id()
        response.headers["request-id"] = request_id
        response.headers["x-standin"] = "true"
        return response

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
