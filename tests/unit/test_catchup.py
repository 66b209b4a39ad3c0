"""Catch-up after downtime and backfill, without a Prefect server: which missed
run each mode skips, and which fire times a backfill range holds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.routes
from api.app import create_app
from api.backfill import fire_times_between
from flows.catchup import catch_up_verdict
from tests.unit.test_errors import RecordingService, assert_error

AUTOMATION = "/v1/automations/auto_0b6e3f3c8a594d6c9a524f1e2d3c4b5a"
FIRED = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
GRACE = timedelta(seconds=120)


def verdict(mode: Any, late_minutes: float, next_fire_minutes: float) -> str | None:
    now = FIRED + timedelta(minutes=late_minutes)
    next_fire = FIRED + timedelta(minutes=next_fire_minutes)
    return catch_up_verdict(mode, FIRED, now, next_fire, GRACE)


class TestCatchUpVerdict:
    def test_all_runs_every_missed_run(self) -> None:
        assert verdict("all", late_minutes=600, next_fire_minutes=1) is None

    def test_latest_skips_a_run_whose_next_fire_time_has_passed(self) -> None:
        assert verdict("latest", late_minutes=3, next_fire_minutes=1) == (
            "skipped: missed its fire time; a later one has passed (catchUp latest)"
        )

    def test_latest_runs_the_most_recent_missed_run(self) -> None:
        assert verdict("latest", late_minutes=30, next_fire_minutes=60) is None

    def test_none_skips_a_run_later_than_the_grace(self) -> None:
        assert verdict("none", late_minutes=3, next_fire_minutes=60) == (
            "skipped: missed its fire time (catchUp none)"
        )

    def test_none_runs_a_run_within_the_grace(self) -> None:
        assert verdict("none", late_minutes=1, next_fire_minutes=60) is None


class TestFireTimesBetween:
    def test_from_is_inclusive_and_to_exclusive(self) -> None:
        times = fire_times_between(
            "0 * * * *",
            "UTC",
            FIRED,
            FIRED + timedelta(hours=3),
            limit=101,
        )

        assert times == [FIRED + timedelta(hours=hour) for hour in range(3)]

    def test_the_schedules_timezone_decides(self) -> None:
        start = datetime(2026, 12, 1, tzinfo=UTC)

        times = fire_times_between(
            "0 8 * * *", "America/Los_Angeles", start, start + timedelta(days=2), 101
        )

        assert times == [
            datetime(2026, 12, 1, 16, tzinfo=UTC),
            datetime(2026, 12, 2, 16, tzinfo=UTC),
        ]

    def test_at_most_limit_times_are_returned(self) -> None:
        times = fire_times_between(
            "* * * * *", "UTC", FIRED, FIRED + timedelta(days=1), limit=101
        )

        assert len(times) == 101


@pytest.fixture
def api_client() -> Iterator[TestClient]:
    recording = RecordingService()
    application = create_app()
    application.dependency_overrides[api.routes._organization] = lambda: "default"
    application.state.service = recording
    application.state.runs = recording
    application.state.idempotency = recording
    yield TestClient(application, raise_server_exceptions=False)
    application.dependency_overrides.clear()


class TestBackfillBody:
    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"to": "2026-12-03T00:00:00Z"}, "from"),
            ({"from": "2026-12-03T00:00:00Z"}, "to"),
            ({"from": "yesterday", "to": "2026-12-03T00:00:00Z"}, "from"),
            ({"from": "2026-12-03T00:00:00Z", "to": "2026-12-03T00:00:00"}, "to"),
            ({"from": "2026-12-03T00:00:00Z", "to": "2026-12-02T00:00:00Z"}, "from"),
            ({"from": "2026-12-03T00:00:00Z", "to": "2026-12-03T00:00:00Z"}, "from"),
            ({"from": "1969-12-03T00:00:00Z", "to": "2026-12-03T00:00:00Z"}, "from"),
            (
                {"from": "2026-12-01T00:00:00Z", "to": "2026-12-03T00:00:00Z", "x": 1},
                "x",
            ),
        ],
    )
    def test_a_bad_range_is_422_naming_the_field(
        self, api_client: TestClient, body: dict[str, Any], param: str
    ) -> None:
        response = api_client.post(f"{AUTOMATION}/backfill", json=body)

        assert_error(response, 422, "invalid_request_error", param=param)
