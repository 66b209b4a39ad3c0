"""Writes of the Prefect variables that runs keep their totals in."""

from __future__ import annotations

from collections.abc import Callable
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


async def add_to_variable(
    name: str, change: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """Apply `change` to the variable's dict and write the result.

    When two runs create the variable at the same moment, the refused one reads
    what the other wrote and applies its change to that, so neither addition is
    lost. Changes at the same moment to a variable that already exists can still
    overwrite each other: Prefect variables have no compare-and-set.
    """
    for attempt in (1, 2):
        current: Any = await Variable.aget(name, default=None)  # type: ignore[func-returns-value]
        value = change(dict(current) if isinstance(current, dict) else {})
        try:
            await Variable.aset(name, value, overwrite=True)
            return
        except ObjectAlreadyExists:
            if attempt == 2:
                raise
