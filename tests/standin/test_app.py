"""The stand-in, driven only through the real `anthropic` SDK and raw HTTP."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import Message, TextBlockParam, ToolParam, ToolUseBlock

from standin import create_app
from tests.standin.conftest import serving

MODEL = "claude-haiku-4-5"
NOTICE = "_(stand-in model: no Anthropic API key configured)_"
SYSTEM = (
    "You review weekly pull requests and summarize open issues for the platform team."
)
QUESTION = "What changed this week?"
# The stand-in counts about four characters a token.
PROMPT_TOKENS = math.ceil(len(f"{SYSTEM}\n{QUESTION}") / 4)
SEARCH_TOOL: ToolParam = {
    "name": "search",
    "description": "Search the issue tracker.",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
}

MakeClient = Callable[..., anthropic.Anthropic]


def ask(text: str = QUESTION) -> list[Any]:
    return [{"role": "user", "content": text}]


def ask_with(blocks: list[dict[str, Any]]) -> list[Any]:
    return [{"role": "user", "content": blocks}]


def text_of(message: Message) -> str:
    [block] = message.content
    assert block.type == "text"
    return block.text


def tool_call(message: Message) -> ToolUseBlock:
    [block] = message.content
    assert block.type == "tool_use"
    return block


def unique(system: str) -> str:
    """Scripted error counts are kept per system prompt, so keep each test's own."""
    return f"Test {uuid.uuid4().hex}. {system}"


def post(url: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"x-api-key": "anything", "anthropic-version": "2023-06-01"}
    return httpx.post(f"{url}/v1/messages", json=body, headers=headers, timeout=10)


# ---------------------------------------------------------------------------
# Shape of ordinary answers


def test_default_reply_has_the_messages_api_shape(standin_url: str) -> None:
    response = post(
        standin_url,
        {"model": MODEL, "max_tokens": 512, "system": SYSTEM, "messages": ask()},
    )

    assert response.status_code == 200
    assert response.headers["x-standin"] == "true"
    body = response.json()
    assert set(body) == {
        "id",
        "type",
        "role",
        "model",
        "content",
        "stop_reason",
        "stop_sequence",
        "usage",
    }
    assert re.fullmatch(r"msg_[0-9a-f]{24}", body["id"])
    assert (body["type"], body["role"], body["model"]) == (
        "message",
        "assistant",
        MODEL,
    )
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)

    [block] = body["content"]
    assert block["type"] == "text"
    assert body["usage"] == {
        "input_tokens": PROMPT_TOKENS,
        "output_tokens": math.ceil(len(block["text"]) / 4),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def test_default_reply_quotes_the_prompt_and_is_deterministic(
    make_client: MakeClient,
) -> None:
    client = make_client()

    first = client.messages.create(
        model=MODEL, max_tokens=512, system=SYSTEM, messages=ask()
    )
    second = client.messages.create(
        model=MODEL, max_tokens=512, system=SYSTEM, messages=ask()
    )

    assert first.id != second.id
    text = text_of(first)
    assert text == text_of(second)
    lines = text.splitlines()
    assert lines[0] == NOTICE
    assert "## Findings" in lines
    bullets = [line for line in lines if line.startswith("- ")]
    assert 2 <= len(bullets) <= 4
    assert '"review weekly pull"' in text
    assert f'"{QUESTION}"' in text
    assert first.usage.input_tokens == PROMPT_TOKENS
    assert first.usage.output_tokens == math.ceil(len(text) / 4)


def test_every_response_carries_a_request_id(standin_url: str) -> None:
    responses = [
        httpx.get(f"{standin_url}/health"),
        httpx.get(f"{standin_url}/no/such/path"),
        post(standin_url, {"model": MODEL, "max_tokens": 5, "messages": ask()}),
        post(standin_url, {"model": MODEL, "messages": ask()}),
    ]

    assert [r.status_code for r in responses] == [200, 404, 200, 400]
    assert responses[0].json() == {"status": "ok", "standin": True}
    assert responses[1].json() == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "Not found"},
    }
    ids = [r.headers["request-id"] for r in responses]
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", rid) for rid in ids)
    assert len(set(ids)) == len(ids)


def test_models_are_listed_in_the_real_shape(make_client: MakeClient) -> None:
    page = make_client().models.list()

    assert [model.id for model in page.data] == [
        "claude-opus-4-5",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
    ]
    assert page.data[0].display_name == "Claude Opus 4.5"
    assert page.data[0].type == "model"
    assert (page.has_more, page.first_id, page.last_id) == (
        False,
        "claude-opus-4-5",
        "claude-haiku-4-5",
    )


def test_models_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_MODELS", "claude-a-1, claude-b-2-1")

    with serving(create_app()) as url:
        client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
        page = client.models.list()

    assert [(m.id, m.display_name) for m in page.data] == [
        ("claude-a-1", "Claude A 1"),
        ("claude-b-2-1", "Claude B 2.1"),
    ]


def test_count_tokens_matches_the_usage_of_a_reply(make_client: MakeClient) -> None:
    client = make_client()

    counted = client.messages.count_tokens(model=MODEL, system=SYSTEM, messages=ask())
    message = client.messages.create(
        model=MODEL, max_tokens=512, system=SYSTEM, messages=ask()
    )

    assert counted.input_tokens == message.usage.input_tokens == PROMPT_TOKENS


# ---------------------------------------------------------------------------
# Usage directives


def test_cache_tokens_are_reported(make_client: MakeClient) -> None:
    message = make_client().messages.create(
        model=MODEL,
        max_tokens=256,
        system=f"{SYSTEM} [standin: cache_read=1200 cache_write=340]",
        messages=ask(),
    )

    assert message.usage.cache_read_input_tokens == 1200
    assert message.usage.cache_creation_input_tokens == 340
    assert message.usage.input_tokens > 0


def test_token_counts_can_be_fixed(make_client: MakeClient) -> None:
    system: list[TextBlockParam] = [
        {"type": "text", "text": SYSTEM},
        {
            "type": "text",
            "text": "[standin: input_tokens=5000] [standin: output_tokens=7]",
        },
    ]

    message = make_client().messages.create(
        model=MODEL, max_tokens=256, system=system, messages=ask()
    )

    assert (message.usage.input_tokens, message.usage.output_tokens) == (5000, 7)


# ---------------------------------------------------------------------------
# Scripted errors


def test_overloaded_twice_then_the_sdk_retry_succeeds(make_client: MakeClient) -> None:
    system = unique(f"{SYSTEM} [standin: error=529 times=2]")

    with pytest.raises(anthropic.OverloadedError) as caught:
        make_client().messages.create(
            model=MODEL, max_tokens=512, system=system, messages=ask()
        )
    started = time.monotonic()
    raw = make_client(max_retries=2).messages.with_raw_response.create(
        model=MODEL, max_tokens=512, system=system, messages=ask()
    )
    elapsed = time.monotonic() - started

    error = caught.value
    assert error.status_code == 529
    assert error.response.headers["retry-after"] == "1"
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "overloaded_error"

    assert raw.retries_taken == 1
    assert 1.0 <= elapsed < 5.0
    assert raw.parse().stop_reason == "end_turn"


def test_rate_limit_surfaces_when_retries_are_off(make_client: MakeClient) -> None:
    system = unique(f"{SYSTEM} [standin: error=429 retry_after=7]")
    client = make_client(max_retries=0)

    for _ in range(2):
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(
                model=MODEL, max_tokens=512, system=system, messages=ask()
            )
        assert caught.value.status_code == 429
        assert caught.value.response.headers["retry-after"] == "7"
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["error"]["type"] == "rate_limit_error"


def test_server_error_has_api_error_type_and_no_retry_after(
    make_client: MakeClient,
) -> None:
    system = unique(f"{SYSTEM} [standin: error=500 times=1]")
    client = make_client(max_retries=0)

    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(
            model=MODEL, max_tokens=512, system=system, messages=ask()
        )
    recovered = client.messages.create(
        model=MODEL, max_tokens=512, system=system, messages=ask()
    )

    assert caught.value.status_code == 500
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "api_error"
    assert "retry-after" not in caught.value.response.headers
    assert recovered.stop_reason == "end_turn"


def test_overloaded_model_fails_while_another_answers(
    make_client: MakeClient,
) -> None:
    system = f"{SYSTEM} [standin: overloaded=claude-opus-4-5,claude-sonnet-4-5]"
    client = make_client(max_retries=0)
    answered: list[str] = []
    failed: list[int] = []

    for model in ("claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5"):
        try:
            message = client.messages.create(
                model=model, max_tokens=512, system=system, messages=ask()
            )
        except anthropic.OverloadedError as error:
            failed.append(error.status_code)
            continue
        answered.append(message.model)

    assert failed == [529, 529]
    assert answered == ["claude-haiku-4-5"]


def test_rate_limited_model_answers_429_while_another_answers(
    make_client: MakeClient,
) -> None:
    system = f"{SYSTEM} [standin: rate_limited=claude-opus-4-5 retry_after=0.1]"
    client = make_client(max_retries=0)

    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(
            model="claude-opus-4-5", max_tokens=512, system=system, messages=ask()
        )
    answered = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=512, system=system, messages=ask()
    )

    assert caught.value.response.headers["retry-after"] == "0.1"
    assert answered.model == "claude-sonnet-4-5"


# ---------------------------------------------------------------------------
# Reply directives


def test_long_reply_stops_at_max_tokens(make_client: MakeClient) -> None:
    client = make_client()
    system = f"{SYSTEM} [standin: reply_chars=400]"

    full = client.messages.create(
        model=MODEL, max_tokens=200, system=system, messages=ask()
    )
    cut = client.messages.create(
        model=MODEL, max_tokens=10, system=system, messages=ask()
    )

    assert full.stop_reason == "end_turn"
    assert len(text_of(full)) == 400
    assert text_of(full).startswith(NOTICE)
    assert cut.stop_reason == "max_tokens"
    assert text_of(cut) == text_of(full)[:40]
    assert cut.usage.output_tokens == 10


def test_max_tokens_flag_cuts_a_short_reply(make_client: MakeClient) -> None:
    client = make_client()

    normal = client.messages.create(
        model=MODEL, max_tokens=1024, system=SYSTEM, messages=ask()
    )
    cut = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        system=f"{SYSTEM} [standin: max_tokens]",
        messages=ask(),
    )

    assert cut.stop_reason == "max_tokens"
    assert normal.stop_reason == "end_turn"
    assert 0 < len(text_of(cut)) < len(text_of(normal))
    assert text_of(normal).startswith(text_of(cut))


def test_literal_reply_allows_escaped_brackets(make_client: MakeClient) -> None:
    message = make_client().messages.create(
        model=MODEL,
        max_tokens=512,
        system="Report. [standin: reply=See [the docs%5D for *details*.]",
        messages=ask(),
    )

    assert text_of(message) == "See [the docs] for *details*."


def test_malformed_directive_is_a_bad_request(make_client: MakeClient) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        make_client().messages.create(
            model=MODEL,
            max_tokens=512,
            system="[standin: delay=soon]",
            messages=ask(),
        )

    assert caught.value.status_code == 400
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "stand-in directive error: delay='soon': "
            "could not convert string to float: 'soon'",
        },
    }


def test_delay_directive_delays_the_answer(make_client: MakeClient) -> None:
    started = time.monotonic()
    message = make_client().messages.create(
        model=MODEL,
        max_tokens=512,
        system=f"{SYSTEM} [standin: delay=0.6]",
        messages=ask(),
    )
    elapsed = time.monotonic() - started

    assert 0.6 <= elapsed < 5.0
    assert message.stop_reason == "end_turn"


# ---------------------------------------------------------------------------
# Tools

TOOL_SYSTEM = (
    f"{SYSTEM} "
    '[standin: tool=search args={"query": "open issues", "labels": ["bug"%5D}]'
)


def test_tool_use_round_trip(make_client: MakeClient) -> None:
    client = make_client()
    messages = ask("Find the open bugs.")

    first = client.messages.create(
        model=MODEL,
        max_tokens=256,
        system=TOOL_SYSTEM,
        tools=[SEARCH_TOOL],
        messages=messages,
    )
    call = tool_call(first)
    assert first.stop_reason == "tool_use"
    assert call.type == "tool_use"
    assert re.fullmatch(r"toolu_[0-9a-f]{24}", call.id)
    assert (call.name, call.input) == (
        "search",
        {"query": "open issues", "labels": ["bug"]},
    )

    result = {
        "type": "tool_result",
        "tool_use_id": call.id,
        "content": [{"type": "text", "text": "Issue 42: login fails on Safari."}],
    }
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [result]},
    ]
    second = client.messages.create(
        model=MODEL,
        max_tokens=256,
        system=TOOL_SYSTEM,
        tools=[SEARCH_TOOL],
        messages=messages,
    )

    assert second.stop_reason == "end_turn"
    text = text_of(second)
    assert text.startswith(NOTICE)
    assert '`search` tool returned: "Issue 42: login fails on Safari."' in text


def test_tool_loop_keeps_asking_for_the_tool(make_client: MakeClient) -> None:
    client = make_client()
    system = f"{TOOL_SYSTEM} [standin: tool_loop]"
    messages = ask("Find the open bugs.")

    for _ in range(3):
        message = client.messages.create(
            model=MODEL,
            max_tokens=256,
            system=system,
            tools=[SEARCH_TOOL],
            messages=messages,
        )
        assert message.stop_reason == "tool_use"
        call = tool_call(message)
        result = {"type": "tool_result", "tool_use_id": call.id, "content": "nothing"}
        messages += [
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": [result]},
        ]

    assert len(messages) == 7


def test_tool_that_is_not_offered_gives_a_text_reply(make_client: MakeClient) -> None:
    message = make_client().messages.create(
        model=MODEL, max_tokens=256, system=TOOL_SYSTEM, messages=ask()
    )

    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"


def test_tool_result_without_its_tool_use_is_rejected(
    make_client: MakeClient,
) -> None:
    result: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": "toolu_missing",
        "content": "x",
    }

    with pytest.raises(anthropic.BadRequestError) as caught:
        make_client().messages.create(
            model=MODEL, max_tokens=512, messages=ask_with([result])
        )

    assert isinstance(caught.value.body, dict)
    message = caught.value.body["error"]["message"]
    assert message.startswith("messages.0.content.0: unexpected `tool_use_id`")


# ---------------------------------------------------------------------------
# Request validation


def test_empty_text_block_is_rejected(make_client: MakeClient) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        make_client().messages.create(
            model=MODEL,
            max_tokens=512,
            messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}],
        )

    assert caught.value.status_code == 400
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "messages: text content blocks must be non-empty",
        },
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({"model": None}, "model: Field required"),
        ({"messages": []}, "messages: at least one message is required"),
        (
            {"messages": [{"role": "user", "content": ""}]},
            "messages.0: all messages must have non-empty content except for the"
            " optional final assistant message",
        ),
    ],
)
def test_invalid_requests_get_the_real_error_shape(
    standin_url: str, change: dict[str, Any], message: str
) -> None:
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 512, "messages": ask()}
    body.update(change)
    body = {key: value for key, value in body.items() if value is not None}

    response = post(standin_url, body)

    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": message},
    }


# ---------------------------------------------------------------------------
# Streaming


def _comparable(message: Message) -> dict[str, Any]:
    dumped = message.model_dump(include={"model", "content", "stop_reason", "usage"})
    for block in dumped["content"]:
        block.pop("id", None)
    return dumped


@pytest.mark.parametrize("system", [SYSTEM, TOOL_SYSTEM])
def test_streaming_matches_the_plain_answer(
    make_client: MakeClient, system: str
) -> None:
    client = make_client()
    request: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 512,
        "system": system,
        "tools": [SEARCH_TOOL],
        "messages": ask(),
    }

    plain = client.messages.create(**request)
    with client.messages.stream(**request) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert _comparable(final) == _comparable(plain)
    assert streamed_text == "".join(
        block.text for block in plain.content if block.type == "text"
    )
    assert final.usage.output_tokens > 0


def test_stream_events_come_in_the_real_order(standin_url: str) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 512,
        "stream": True,
        "system": f"{SYSTEM} [standin: reply_chars=60]",
        "messages": ask(),
    }

    response = post(standin_url, body)
    events = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]

    assert response.headers["content-type"].startswith("text/event-stream")
    kinds = [event["type"] for event in events]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[3:-3]) == {"content_block_delta"}
    text = "".join(event["delta"]["text"] for event in events[3:-3])
    assert len(text) == 60
    assert events[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[-2]["usage"]["output_tokens"] == 15
