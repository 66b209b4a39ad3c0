"""Which worker the stack starts."""

from __future__ import annotations

import pytest

from api.stack import worker_kind


def test_in_process_worker_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKJET_WORKER", raising=False)

    assert worker_kind() == "inprocess"


def test_stock_process_worker_is_chosen_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKJET_WORKER", "process")

    assert worker_kind() == "process"


def test_unknown_worker_kind_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKJET_WORKER", "docker")

    with pytest.raises(ValueError, match="WORKJET_WORKER must be one of"):
        worker_kind()
