"""A check of our own for the schemathesis run: every error has the contract's body."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def error_body_has_contract_shape(ctx: Any, response: Any, case: Any) -> None:
    if response.status_code < 400:
        return

    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(error) != {
        "type",
        "code",
        "message",
        "param",
    }:
        raise AssertionError(f"error body out of shape: {body!r}")
    if "Traceback" in error["message"] or "prefect" in error["message"].lower():
        raise AssertionError(f"error message leaks internals: {error['message']!r}")
