"""Writes of the Prefect variables that runs keep their totals in."""

from __future__ import annotations

from typing import Any

from prefect.exceptions import ObjectAlreadyExists
from prefect.variables import Variable


async def save_variable(name: str, value: Any) -> None:
    """Create or overwrite the variable.

    Prefect's own `aset` reads, then creates or updates; two runs of a new
    automation starting together (a catch-up, a backfill) both find nothing and
    both create, and the second is refused. By then the variable exists, so that
    one updates it instead.
    """
    try:
        await Variable.aset(name, value, overwrite=True)
    except ObjectAlreadyExists:
        await Variable.aset(name, value, overwrite=True)
