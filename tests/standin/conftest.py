"""A real stand-in server on a free loopback port, shared by the whole session."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anthropic
import pytest
import uvicorn
from fastapi import FastAPI

from standin import create_app

STARTUP_TIMEOUT_SECONDS = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Run `app` with uvicorn in a background thread; yield its base URL."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="standin", daemon=True)
    thread.start()

    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the stand-in server did not start")
        time.sleep(0.02)

    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_SECONDS)


@pytest.fixture(scope="session")
def standin_url() -> Iterator[str]:
    with serving(create_app()) as url:
        yield url


@pytest.fixture(scope="session")
def make_client(standin_url: str) -> Callable[..., anthropic.Anthropic]:
    """Clients for the stand-in; retries are off unless a test asks for them."""

    def make(max_retries: int = 0) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=standin_url,
            api_key="not-a-real-key",
            max_retries=max_retries,
            timeout=30.0,
        )

    return make
