"""Keys on the real stack: revocation holds from the next request, and a facade's
per-key rate limit answers 429 with Retry-After."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from api.stack import wait_until_up
from tests.integration.conftest import LiveStack, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def limited_api(live: LiveStack) -> Iterator[str]:
    """A second facade on the shared Prefect, allowing 5 requests a minute a key."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.app:app", "--port", str(port)],
        cwd=live.stack.config.project_dir,
        env={**live.environment, "WORKJET_RATE_LIMIT_PER_MINUTE": "5"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v1/health", 60, process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_a_revoked_key_is_refused_on_the_next_request(live: LiveStack) -> None:
    key = live.stack.create_key("revoked-org")
    client = httpx.Client(
        base_url=live.stack.config.api_url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert client.get("/automations").status_code == 200

    subprocess.run(
        [sys.executable, "-m", "api.cli", "keys", "revoke", key[:12]],
        cwd=live.stack.config.project_dir,
        env=live.environment,
        check=True,
        capture_output=True,
        timeout=60,
    )

    refused = client.get("/automations")
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"


def test_requests_past_the_keys_rate_limit_are_429_with_retry_after(
    live: LiveStack, limited_api: str
) -> None:
    headers = {"Authorization": live.api.headers["Authorization"]}
    other = {"Authorization": live.other.headers["Authorization"]}

    answers = [
        httpx.get(f"{limited_api}/automations", headers=headers, timeout=30)
        for _ in range(6)
    ]
    other_key = httpx.get(f"{limited_api}/automations", headers=other, timeout=30)

    assert [a.status_code for a in answers] == [200] * 5 + [429]
    refused = answers[-1]
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused.headers["Retry-After"]) >= 1
    assert other_key.status_code == 200


class TestWebhookTargets:
    @pytest.mark.parametrize(
        "url",
        [
            "http://2130706433/hook",
            "http://0x7f.1/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://10.1.2.3/hook",
        ],
    )
    def test_a_webhook_to_this_network_is_refused_at_create_and_update(
        self, live: LiveStack, url: str
    ) -> None:
        body = {
            "name": "Hook to here",
            "systemPrompt": "Say hello.",
            "schedule": "0 8 * * *",
            "channels": [
                {"type": "slack", "channel": "#ops"},
                {"type": "webhook", "url": url},
            ],
        }
        before = live.api.get("/automations").json()["total"]

        created = live.api.post("/automations", json=body)
        allowed = live.api.post(
            "/automations",
            json={
                **body,
                "channels": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}],
            },
        )
        assert allowed.status_code == 201, allowed.text
        automation_id = allowed.json()["id"]
        try:
            updated = live.api.put(
                f"/automations/{automation_id}",
                json={"channels": [{"type": "webhook", "url": url}]},
            )
            kept = live.api.get(f"/automations/{automation_id}").json()
        finally:
            live.api.delete(f"/automations/{automation_id}")

        assert created.status_code == 422
        assert created.json()["error"]["param"] == "channels[1].url"
        assert "resolves to a private address" in created.json()["error"]["message"]
        assert updated.status_code == 422
        assert updated.json()["error"]["param"] == "channels[0].url"
        assert kept["channels"][0]["url"] == "http://127.0.0.1:9/hook"
        assert live.api.get("/automations").json()["total"] == before
