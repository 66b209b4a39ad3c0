"""One real stack for the integration tests: Prefect server, worker (WORKJET_WORKER),
stand-in model and facade, started exactly as `workjet up` starts them, on free
loopback ports with their data in a temporary directory."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.stack import Stack, StackConfig
from flows.ids import deployment_id_of


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveStack:
    stack: Stack
    api: httpx.Client
    other: httpx.Client
    prefect: httpx.Client

    @property
    def environment(self) -> dict[str, str]:
        return self.stack.environment

    def prefect_cli(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            cwd=self.stack.config.project_dir,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def run_python(self, code: str, *args: str) -> None:
        """Run code in a process of its own pointed at this stack's Prefect, as an
        operator's script would (Prefect reads its settings when imported)."""
        subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=self.stack.config.project_dir,
            env=self.environment,
            check=True,
            timeout=60,
        )

    def prefect_post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST to Prefect, sending again while SQLite is busy (503)."""
        for _ in range(10):
            response = self.prefect.post(path, json=body)
            if response.status_code != 503:
                return response
            time.sleep(1)
        return response

    def wait_for_run(
        self, automation_id: str, run_id: str, timeout: float = 120
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.api.get(f"/automations/{automation_id}/runs?limit=100").json()
            for run in runs["runs"]:
                if run["id"] == run_id and run["status"] != "running":
                    return dict(run)
            time.sleep(1)
        raise AssertionError(f"{run_id} did not finish within {timeout} s")


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    config = StackConfig(
        home=tmp_path_factory.mktemp("workjet"),
        api_port=free_port(),
        prefect_port=free_port(),
        standin_port=free_port(),
        database_url=os.environ.get("WORKJET_TEST_DATABASE_URL") or None,
    )
    stack = Stack(config)
    try:
        stack.start_standin()
        stack.start_prefect()
        key = stack.bootstrap()
        assert key and key.startswith("wj_live_")
        stack.start_worker()
        stack.start_api()
        other_key = stack.create_key("other-org")

        def client(token: str, base: str) -> httpx.Client:
            return httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )

        yield LiveStack(
            stack=stack,
            api=client(key, config.api_url),
            other=client(other_key, config.api_url),
            prefect=httpx.Client(base_url=config.prefect_api_url, timeout=30),
        )
    finally:
        stack.stop()


@pytest.fixture
def make_automation(live: LiveStack) -> Iterator[Callable[..., dict[str, Any]]]:
    """Create automations through the API; delete whatever is left afterwards."""
    made: list[str] = []

    def make(**fields: Any) -> dict[str, Any]:
        body = {
            "name": f"Test automation {uuid.uuid4().hex[:6]}",
            "systemPrompt": "Summarise the state of the docs.",
            "schedule": "0 8 * * 1-5",
            "timezone": "America/Los_Angeles",
            **fields,
        }
        response = live.api.post("/automations", json=body)
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
        return dict(response.json())

    yield make
    for automation_id in made:
        live.api.delete(f"/automations/{automation_id}")


def directive(**values: Any) -> str:
    """A stand-in directive, plus a nonce so its error counters are this test's own."""
    pairs = " ".join(f"{key}={value}" for key, value in values.items())
    return f"[standin: {pairs}] (case {uuid.uuid4().hex[:8]})"


def schedule_run(live: LiveStack, automation: dict[str, Any]) -> str:
    """A run as Prefect's scheduler makes it: from the deployment, tagged
    `auto-scheduled`, due now; no minute of wall-clock time is waited for."""
    deployment = deployment_id_of(automation["id"])
    response = live.prefect_post(
        f"/deployments/{deployment}/create_flow_run", {"tags": ["auto-scheduled"]}
    )
    assert response.status_code == 201, response.text
    return "run_" + response.json()["id"].replace("-", "")


def start_run(live: LiveStack, automation: dict[str, Any]) -> str:
    response = live.api.post(f"/automations/{automation['id']}/run")
    assert response.status_code == 202, response.text
    return str(response.json()["runId"])


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver on loopback that records what it is sent and answers 200."""

    received: list[Received] = []

    def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        Receiver.received.append(Received(self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture
def project_dir() -> Path:
    return Path(__file__).resolve().parents[2]
