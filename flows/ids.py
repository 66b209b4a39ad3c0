"""Public ids are Prefect's own ids with a prefix, so no side table maps them."""

from __future__ import annotations

import re
from uuid import UUID

_AUTOMATION = re.compile(r"auto_([0-9a-f]{32})")
_RUN = re.compile(r"run_([0-9a-f]{32})")


def automation_id(deployment_id: UUID) -> str:
    return f"auto_{deployment_id.hex}"


def run_id(flow_run_id: UUID) -> str:
    return f"run_{flow_run_id.hex}"


def deployment_id_of(public_id: str) -> UUID | None:
    match = _AUTOMATION.fullmatch(public_id)
    return UUID(match.group(1)) if match else None


def flow_run_id_of(public_id: str) -> UUID | None:
    match = _RUN.fullmatch(public_id)
    return UUID(match.group(1)) if match else None


def stats_variable_name(deployment_id: UUID) -> str:
    """The Prefect variable holding an automation's running totals."""
    return f"workjet_stats_{deployment_id.hex}"
