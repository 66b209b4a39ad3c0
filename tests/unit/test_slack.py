"""Slack delivery (flows.slack) through the real slack-sdk against a loopback
server that answers as Slack's Web API does (tests/fakes/slack_api.py)."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from blocks.channels import WorkjetSlackCredentials
from flows import slack
from flows.slack import (
    MESSAGE_TEXT_LIMIT,
    SECTION_LIMIT,
    deliver_slack,
    group_messages,
    split_sections,
)
from tests.fakes.slack_api import TOKEN, FakeSlack, serving_slack, utf16_length

NAME = "Docs digest"
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "outdated", "page"]


def plain_text(length: int, seed: int = 7) -> str:
    """Lines of words, exactly `length` characters, with no Markdown in them."""
    chooser = random.Random(seed)
    lines: list[str] = []
    while sum(len(line) + 1 for line in lines) <= length:
        lines.append(" ".join(chooser.choices(WORDS, k=chooser.randint(3, 25))))
    text = "\n".join(lines)[:length]
    return text[:-1] + "x" if text[-1].isspace() else text


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with serving_slack() as state:
        yield state


@pytest.fixture
def credentials(fake: FakeSlack) -> WorkjetSlackCredentials:
    return WorkjetSlackCredentials(token=SecretStr(TOKEN), base_url=fake.base_url)


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record each wait between attempts instead of sleeping it."""
    asked: list[float] = []

    async def record(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(slack, "_pause", record)
    return asked


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestSplitting:
    def test_plain_text_helper_makes_exact_lengths(self) -> None:
        assert len(plain_text(3_001)) == 3_001
        assert len(plain_text(45_000)) == 45_000

    def test_3001_characters_become_two_sections_within_the_limit(self) -> None:
        text = plain_text(3_001)

        sections = split_sections(text)

        assert len(sections) == 2
        assert all(len(section) <= SECTION_LIMIT for section in sections)
        assert " ".join(sections).split() == text.split()

    def test_sections_are_cut_at_line_breaks(self) -> None:
        lines = [f"line {number} " + "word " * 20 for number in range(200)]

        sections = split_sections("\n".join(line.strip() for line in lines))

        assert "\n".join(sections).split("\n") == [line.strip() for line in lines]

    def test_a_code_block_cut_in_two_is_closed_and_opened_again(self) -> None:
        code = "```\n" + "\n".join(f"print({n})" for n in range(600)) + "\n```"

        sections = split_sections(code)

        assert len(sections) >= 2
        for section in sections:
            assert section.startswith("```\n") and section.endswith("\n```")
            assert len(section) <= SECTION_LIMIT

    def test_characters_outside_the_basic_plane_count_twice(self) -> None:
        text = "\U0001f680" * 2_000  # 4,000 UTF-16 code units

        sections = split_sections(text)

        assert [utf16_length(section) for section in sections] == [2_992, 1_008]
        assert "".join(sections) == text

    def test_an_escape_or_a_link_is_never_cut(self) -> None:
        text = "a" * 2_990 + "&amp;<https://example.com|example> tail"

        sections = split_sections(text)

        assert sections[0] == "a" * 2_990
        assert sections[1].startswith("&amp;<https://example.com|example>")

    def test_messages_stay_under_the_text_limit(self) -> None:
        sections = split_sections(plain_text(45_000))

        messages = group_messages(sections)

        assert len(messages) > 1
        assert [s for message in messages for s in message] == sections
        for message in messages:
            assert sum(utf16_length(s) for s in message) <= MESSAGE_TEXT_LIMIT


class TestDelivered:
    async def test_3001_characters_arrive_as_two_sections(
        self, fake: FakeSlack, credentials: WorkjetSlackCredentials
    ) -> None:
        output = plain_text(3_001)

        result = await deliver_slack("#docs-team", output, NAME, credentials)

        assert result.status == "delivered", result.error
        assert result.attempts == 1
        assert len(fake.posted) == 1
        assert len(fake.sections()) == 2
        assert " ".join(fake.sections()).split() == output.split()

    async def test_45000_characters_arrive_whole_and_in_order(
        self, fake: FakeSlack, credentials: WorkjetSlackCredentials
    ) -> None:
        output = plain_text(45_000, seed=11)

        result = await deliver_slack("#docs-team", output, NAME, credentials)

        assert result.status == "delivered", result.error
        assert len(fake.posted) >= 5  # every one within the fake's Slack limits
        assert " ".join(fake.sections()).split() == output.split()
        parts = [message["text"] for message in fake.posted]
        assert parts == [f"{NAME} ({n}/{len(parts)})" for n in range(1, len(parts) + 1)]

    async def test_markdown_arrives_as_slack_markup(
        self, fake: FakeSlack, credentials: WorkjetSlackCredentials
    ) -> None:
        output = "## Findings\n\n- **Outdated**: [install guide](https://d.example/i)"

        await deliver_slack("#docs-team", output, NAME, credentials)

        assert fake.sections() == [
            "*Findings*\n\n• *Outdated*: <https://d.example/i|install guide>"
        ]

    async def test_first_message_names_the_automation(
        self, fake: FakeSlack, credentials: WorkjetSlackCredentials
    ) -> None:
        await deliver_slack("#docs-team", "All good.", "Docs <digest>", credentials)

        [message] = fake.posted
        assert message["blocks"][0] == {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "*Docs &lt;digest&gt;*"}],
        }
        assert message["text"] == "Docs <digest>"
        assert message["channel"] == "C0DOCS0001"

    async def test_a_channel_id_is_a_target_too(
        self, fake: FakeSlack, credentials: WorkjetSlackCredentials
    ) -> None:
        result = await deliver_slack("C0DOCS0001", "All good.", NAME, credentials)

        assert result.status == "delivered"
        assert result.target == "C0DOCS0001"

    async def test_token_goes_only_in_the_authorization_header(
        self, fake: FakeSlack, credentials: WorkjetSlackCredentials
    ) -> None:
        result = await deliver_slack("#docs-team", "All good.", NAME, credentials)

        assert fake.authorizations == [f"Bearer {TOKEN}"]
        assert TOKEN not in result.model_dump_json()
        assert TOKEN not in repr(credentials)


class TestRateLimitsAndErrors:
    async def test_429_with_retry_after_is_waited_out_then_delivered(
        self,
        fake: FakeSlack,
        credentials: WorkjetSlackCredentials,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        waited: list[float] = []
        real_pause = slack._pause

        async def observed(seconds: float) -> None:
            waited.append(seconds)
            await real_pause(seconds)

        monkeypatch.setattr(slack, "_pause", observed)
        fake.rate_limits = ["1"]

        result = await deliver_slack("#docs-team", "All good.", NAME, credentials)

        assert result.status == "delivered"
        assert result.attempts == 2
        assert waited == [1.0]
        assert fake.requests == 2
        assert len(fake.posted) == 1

    async def test_retry_after_beyond_the_bound_fails_without_waiting(
        self, fake: FakeSlack, credentials: WorkjetSlackCredentials, pauses: list[float]
    ) -> None:
        fake.rate_limits = ["120"]

        result = await deliver_slack("#docs-team", "All good.", NAME, credentials)

        assert result.status == "failed"
        assert result.error == "ratelimited (Slack asked to wait 120 s)"
        assert result.attempts == 1
        assert pauses == []

    async def test_rate_limited_on_every_attempt_fails_after_all_attempts(
        self, fake: FakeSlack, credentials: WorkjetSlackCredentials, pauses: list[float]
    ) -> None:
        fake.rate_limits = ["2", "2", "2"]

        result = await deliver_slack("#docs-team", "All good.", NAME, credentials)

        assert result.status == "failed"
        assert result.error == "ratelimited"
        assert result.attempts == 3
        assert pauses == [2.0, 2.0]

    async def test_server_errors_are_retried_with_backoff(
        self, fake: FakeSlack, credentials: WorkjetSlackCredentials, pauses: list[float]
    ) -> None:
        fake.server_errors = [503, 500]

        result = await deliver_slack("#docs-team", "All good.", NAME, credentials)

        assert result.status == "delivered"
        assert result.attempts == 3
        assert pauses == [1.0, 2.0]

    async def test_not_in_channel_is_a_failure_and_nothing_is_posted(
        self, fake: FakeSlack, credentials: WorkjetSlackCredentials, pauses: list[float]
    ) -> None:
        result = await deliver_slack("#private-team", "All good.", NAME, credentials)

        assert result.status == "failed"
        assert result.error == "not_in_channel (invite the Slack app to the channel)"
        assert result.attempts == 1
        assert fake.posted == []
        assert pauses == []

    async def test_unknown_channel_is_a_failure(
        self, fake: FakeSlack, credentials: WorkjetSlackCredentials
    ) -> None:
        result = await deliver_slack("#nowhere", "All good.", NAME, credentials)

        assert result.status == "failed"
        assert result.error is not None
        assert result.error.startswith("channel_not_found")

    async def test_wrong_token_is_a_failure(self, fake: FakeSlack) -> None:
        wrong = WorkjetSlackCredentials(
            token=SecretStr("xoxb-wrong"), base_url=fake.base_url
        )

        result = await deliver_slack("#docs-team", "All good.", NAME, wrong)

        assert result.status == "failed"
        assert result.error == "invalid_auth (the Slack token is not valid)"
        assert "xoxb-wrong" not in result.model_dump_json()

    async def test_unreachable_slack_fails_after_all_attempts(
        self, pauses: list[float]
    ) -> None:
        nowhere = WorkjetSlackCredentials(
            token=SecretStr(TOKEN), base_url=f"http://127.0.0.1:{closed_port()}/api/"
        )

        result = await deliver_slack("#docs-team", "All good.", NAME, nowhere)

        assert result.status == "failed"
        assert result.attempts == 3
        assert result.error == "cannot reach Slack (URLError)"

    async def test_a_failure_after_the_first_message_says_how_many_were_posted(
        self, fake: FakeSlack, credentials: WorkjetSlackCredentials
    ) -> None:
        output = plain_text(25_000)
        payloads = slack.slack_messages(output, NAME)
        real_post = slack._post

        async def post_then_leave(*args: Any) -> tuple[int, str | None]:
            outcome = await real_post(*args)
            # The app is removed from the channel after its first message.
            fake.not_member_of.add("docs-team")
            fake.member_of.pop("docs-team", None)
            return outcome

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(slack, "_post", post_then_leave)
            result = await deliver_slack("#docs-team", output, NAME, credentials)

        assert len(payloads) >= 3
        assert result.status == "failed"
        assert result.error == (
            "not_in_channel (invite the Slack app to the channel)"
            f" (1 of {len(payloads)} messages were posted)"
        )
        assert len(fake.posted) == 1


class TestFakeSlack:
    def test_the_fake_takes_form_bodies_as_slack_does(
        self, fake: FakeSlack, credentials: WorkjetSlackCredentials
    ) -> None:
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]

        response = credentials.get_client().api_call(
            "chat.postMessage",
            params={
                "channel": "#docs-team",
                "text": "hi",
                "blocks": json.dumps(blocks),
            },
        )

        assert response["ok"] is True
        assert fake.posted[0]["blocks"] == blocks
        assert fake.authorizations == [f"Bearer {TOKEN}"]
