"""The fault drill of `python -m bench.faults`, on a stack of its own so that its
killed worker and restarted servers leave the shared stack alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults import run_drill

pytestmark = pytest.mark.integration


def test_faults_lose_stick_and_double_no_run(tmp_path: Path) -> None:
    # A short burst and the shortest safe window (two 30 s heartbeats) keep it
    # to about four minutes; the command's defaults are 50 runs and 90 s.
    report = run_drill(tmp_path, burst=10, lost_window=60)

    print(report.table())
    assert [f.name for f in report.faults if not f.held] == []
    assert (report.lost, report.stuck, report.doubled) == (0, 0, 0)
    assert report.unexpected_failures == []
    # The lost run, the run after it, one after the restart, two of the model's
    # capacity and the burst.
    assert report.requested == 5 + 10
