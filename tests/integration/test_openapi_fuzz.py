"""Schemathesis against the running service's own OpenAPI document: no 5xx, every
answer matches the schema, every error has the contract's body."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import LiveStack

pytestmark = pytest.mark.integration

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "error_body_has_contract_shape",
    ]
)


def test_generated_requests_meet_the_schema_and_the_error_contract(
    live: LiveStack,
) -> None:
    key = live.api.headers["Authorization"]
    schema_url = live.stack.config.api_url.removesuffix("/v1") + "/openapi.json"
    project = Path(__file__).resolve().parents[2]

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            schema_url,
            "--header",
            f"Authorization: {key}",
            "--checks",
            CHECKS,
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            "25",
            "--workers",
            "1",
            "--seed",
            "20261203",
            "--generation-deterministic",
        ],
        cwd=project,
        env={
            **os.environ,
            "PYTHONPATH": str(project),
            "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
