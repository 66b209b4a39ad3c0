"""Slack and email delivery end to end: a real process worker runs the flow, which
loads the channel blocks saved in Prefect and posts to a fake Slack Web API and a
real SMTP server (aiosmtpd), both on loopback in this test process."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from flows.agent import TRUNCATION_NOTE
from flows.mrkdwn import to_mrkdwn
from tests.fakes.slack_api import TOKEN, FakeSlack, serving_slack
from tests.fakes.smtp import Received, SmtpServer, serving_smtp
from tests.integration.conftest import LiveStack, directive

pytestmark = pytest.mark.integration

SENDER = "workjet@example.com"


@pytest.fixture(scope="module")
def fake_slack() -> Iterator[FakeSlack]:
    with serving_slack() as state:
        yield state


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with serving_smtp() as server:
        yield server


@pytest.fixture(scope="module")
def channel_blocks(
    live: LiveStack, fake_slack: FakeSlack, smtp: SmtpServer
) -> Iterator[None]:
    """Save the Slack and SMTP blocks the way an operator would; remove them after,
    so that other tests see an unconfigured Slack again."""
    _run_with_prefect(
        "from pydantic import SecretStr\n"
        "from blocks import WorkjetSlackCredentials, WorkjetSmtpServer\n"
        "async def main():\n"
        f"    await WorkjetSlackCredentials(token=SecretStr({TOKEN!r}),"
        f" base_url={fake_slack.base_url!r}).asave('default', overwrite=True)\n"
        f"    await WorkjetSmtpServer(host={smtp.host!r}, port={smtp.port},"
        f" security='none', from_address={SENDER!r}).asave('default',"
        " overwrite=True)\n",
        live,
    )
    yield
    _run_with_prefect(
        "from blocks import WorkjetSlackCredentials, WorkjetSmtpServer\n"
        "async def main():\n"
        "    await WorkjetSlackCredentials.adelete('default')\n"
        "    await WorkjetSmtpServer.adelete('default')\n",
        live,
    )


def _run_with_prefect(definition: str, live: LiveStack) -> None:
    live.run_python(f"import asyncio\n{definition}asyncio.run(main())\n")


def run_once(live: LiveStack, automation: dict[str, Any]) -> dict[str, Any]:
    response = live.api.post(f"/automations/{automation['id']}/run")
    assert response.status_code == 202, response.text
    return live.wait_for_run(automation["id"], response.json()["runId"])


def messages_of(fake: FakeSlack, automation: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in fake.posted if m["text"].startswith(automation["name"])]


def sections_of(message: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]


def mail_to(smtp: SmtpServer, address: str) -> list[Received]:
    return [r for r in smtp.inbox.received if address in r.recipients]


def text_part(received: Received, subtype: str) -> str:
    part = received.message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    return str(part.get_content()).replace("\r\n", "\n")


@pytest.mark.usefixtures("channel_blocks")
class TestChannelDelivery:
    def test_a_run_is_posted_to_slack_and_mailed_and_both_are_recorded(
        self,
        live: LiveStack,
        make_automation: Callable[..., dict[str, Any]],
        fake_slack: FakeSlack,
        smtp: SmtpServer,
    ) -> None:
        ana = f"ana+{uuid.uuid4().hex[:6]}@example.com"
        automation = make_automation(
            channels=[
                {"type": "slack", "channel": "#docs-team"},
                {"type": "email", "to": [ana, "bo@example.org"]},
            ]
        )

        run = run_once(live, automation)

        assert run["status"] == "success", run
        assert run["error"] is None
        assert [
            (d["type"], d["target"], d["status"], d["attempts"], d["error"])
            for d in run["deliveries"]
        ] == [
            ("slack", "#docs-team", "delivered", 1, None),
            ("email", f"{ana}, bo@example.org", "delivered", 1, None),
        ]
        assert all(d["at"].endswith("Z") for d in run["deliveries"])

        [message] = messages_of(fake_slack, automation)
        assert message["channel"] == "C0DOCS0001"
        assert sections_of(message) == [to_mrkdwn(run["output"])]
        assert "*Findings*" in sections_of(message)[0]

        [received] = mail_to(smtp, ana)
        assert received.sender == SENDER
        assert received.recipients == [ana, "bo@example.org"]
        started = datetime.strptime(run["startedAt"], "%Y-%m-%dT%H:%M:%SZ")
        local = started.replace(tzinfo=UTC).astimezone(ZoneInfo("America/Los_Angeles"))
        assert received.message["Subject"] == (
            f"{automation['name']} — {local:%Y-%m-%d}"
        )
        assert text_part(received, "plain") == run["output"] + "\n"
        assert "<h2>Findings</h2>" in text_part(received, "html")

    def test_a_refused_channel_fails_the_run_and_the_others_get_all_the_output(
        self,
        live: LiveStack,
        make_automation: Callable[..., dict[str, Any]],
        fake_slack: FakeSlack,
        smtp: SmtpServer,
    ) -> None:
        # 20,000 characters are more than the model's token limit lets through:
        # the output is cut, and long enough to need several Slack messages.
        ana = f"ana+{uuid.uuid4().hex[:6]}@example.com"
        automation = make_automation(
            systemPrompt="Write at length. " + directive(reply_chars=20000),
            channels=[
                {"type": "slack", "channel": "#docs-team"},
                {"type": "slack", "channel": "#private-team"},
                {"type": "email", "to": [ana]},
            ],
        )

        run = run_once(live, automation)

        assert run["status"] == "failure"
        assert run["error"] == (
            "delivery to slack #private-team failed:"
            " not_in_channel (invite the Slack app to the channel)"
        )
        assert run["output"].endswith(TRUNCATION_NOTE), "the output is kept"
        assert run["tokensOutput"] > 0 and run["estimatedCost"] > 0
        assert [(d["target"], d["status"]) for d in run["deliveries"]] == [
            ("#docs-team", "delivered"),
            ("#private-team", "failed"),
            (ana, "delivered"),
        ]

        messages = messages_of(fake_slack, automation)
        assert len(messages) >= 2
        assert {message["channel"] for message in messages} == {"C0DOCS0001"}
        sections = [s for message in messages for s in sections_of(message)]
        assert " ".join(sections).split() == to_mrkdwn(run["output"]).split()
        assert sections[-1].endswith(
            "_(Output truncated: the model reached its output token limit.)_"
        )
        [received] = mail_to(smtp, ana)
        assert text_part(received, "plain") == run["output"] + "\n"

    def test_a_run_without_output_sends_nothing_and_skips_every_channel(
        self,
        live: LiveStack,
        make_automation: Callable[..., dict[str, Any]],
        fake_slack: FakeSlack,
        smtp: SmtpServer,
    ) -> None:
        # The stand-in cannot reply with nothing; a refused model call leaves the
        # run without output just the same.
        ana = f"ana+{uuid.uuid4().hex[:6]}@example.com"
        automation = make_automation(
            systemPrompt="Check. " + directive(error=400),
            channels=[
                {"type": "slack", "channel": "#docs-team"},
                {"type": "email", "to": [ana]},
            ],
        )

        run = run_once(live, automation)

        assert run["status"] == "failure"
        assert run["output"] is None
        assert [(d["type"], d["status"], d["attempts"]) for d in run["deliveries"]] == [
            ("slack", "skipped", 0),
            ("email", "skipped", 0),
        ]
        assert {d["error"] for d in run["deliveries"]} == {f"not sent: {run['error']}"}
        assert messages_of(fake_slack, automation) == []
        assert mail_to(smtp, ana) == []
