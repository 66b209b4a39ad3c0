"""The lost-run detector the bootstrap makes in Prefect (its own automations
feature); the fault drill shows it crashing a run whose worker was killed."""

from __future__ import annotations

import pytest

from api.lost_runs import DETECTOR_NAME
from tests.integration.conftest import LiveStack

pytestmark = pytest.mark.integration


def test_bootstrap_again_keeps_one_detector(live: LiveStack) -> None:
    live.stack.bootstrap()

    found = live.prefect.post(
        "/automations/filter",
        json={"automations": {"name": {"any_": [DETECTOR_NAME]}}},
    ).json()

    assert len(found) == 1
    detector = found[0]
    assert detector["enabled"] is True
    assert detector["trigger"]["posture"] == "Proactive"
    assert detector["trigger"]["within"] == 90.0
    assert detector["actions"][0]["state"] == "CRASHED"
    assert detector["actions"][0]["message"].startswith("worker lost")
