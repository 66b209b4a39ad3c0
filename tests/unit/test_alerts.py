"""What a finished run decides beyond its record: the failure streak, alerts,
recovery and auto-pause (flows.alerts), and the pause body of the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.routes
from api.app import create_app
from api.schemas import PauseOut
from flows.alerts import AfterRun, _notice, plan_after_run
from flows.guardrails import Guardrails, NotifyPolicy
from tests.unit.test_errors import VALID_BODY, RecordingService, assert_error

AUTOMATION = "/v1/automations/auto_0b6e3f3c8a594d6c9a524f1e2d3c4b5a"


def guardrails(
    after: int = 1, recovery: bool = False, pause: int | None = None
) -> Guardrails:
    return Guardrails(
        notify=NotifyPolicy(after_consecutive_failures=after, on_recovery=recovery),
        pause_after_consecutive_failures=pause,
    )


class TestPlanAfterRun:
    def test_no_guardrails_only_counts_the_streak(self) -> None:
        assert plan_after_run(True, 4, False, None) == AfterRun(
            streak=5, alert=None, alerted=False, pause=False
        )

    def test_failures_alert_from_the_nth_in_a_row(self) -> None:
        rules = guardrails(after=3)

        plans = [plan_after_run(True, before, False, rules) for before in range(4)]

        assert [plan.alert for plan in plans] == [None, None, "failure", "failure"]
        assert [plan.streak for plan in plans] == [1, 2, 3, 4]

    def test_never_does_not_alert(self) -> None:
        rules = Guardrails(notify=NotifyPolicy(on_failure="never"))

        assert plan_after_run(True, 9, False, rules).alert is None

    def test_a_success_after_an_alert_sends_one_recovery(self) -> None:
        rules = guardrails(recovery=True)

        first = plan_after_run(False, 2, True, rules)
        second = plan_after_run(False, first.streak, first.alerted, rules)

        assert (first.alert, first.streak, first.alerted) == ("recovery", 0, False)
        assert second.alert is None

    def test_no_recovery_without_an_alert_or_when_not_asked(self) -> None:
        assert plan_after_run(False, 2, False, guardrails(recovery=True)).alert is None
        assert plan_after_run(False, 2, True, guardrails(recovery=False)).alert is None

    def test_the_nth_failure_in_a_row_pauses(self) -> None:
        rules = guardrails(after=5, pause=2)

        assert plan_after_run(True, 0, False, rules).pause is False
        assert plan_after_run(True, 1, False, rules).pause is True

    def test_a_success_resets_the_streak(self) -> None:
        assert plan_after_run(False, 7, False, guardrails(pause=2)).streak == 0


def finished(error: str | None = "model refused the request") -> dict[str, Any]:
    return {
        "automationId": "auto_0b6e",
        "automationName": "Docs digest",
        "run": {"id": "run_5d1c", "trigger": "schedule", "error": error},
    }


class TestNotice:
    def test_failure_names_the_automation_the_error_and_the_run(self) -> None:
        plan = AfterRun(streak=3, alert="failure", alerted=True, pause=False)

        notice = _notice(plan, 2, finished(), "http://ui/runs/flow-run/5d1c", None)

        assert notice.event == "failure"
        assert notice.subject == "Docs digest: run failed"
        assert notice.text == (
            "**Docs digest**: a schedule run failed (3 in a row).\n\n"
            "Error: model refused the request\n\n"
            "Run run_5d1c: http://ui/runs/flow-run/5d1c"
        )

    def test_failure_that_paused_says_so(self) -> None:
        plan = AfterRun(streak=2, alert="failure", alerted=True, pause=True)

        notice = _notice(plan, 1, finished(), None, "paused after 2 failed runs")

        assert notice.text.endswith(
            "Run run_5d1c\n\nThe automation is now paused: paused after 2 failed runs."
        )

    def test_recovery_counts_the_failures_before_it(self) -> None:
        plan = AfterRun(streak=0, alert="recovery", alerted=False, pause=False)

        notice = _notice(plan, 1, finished(None), "http://ui/x", None)

        assert notice.event == "recovery"
        assert notice.text == (
            "**Docs digest** succeeds again after 1 failed run.\n\nRun run_5d1c:"
            " http://ui/x"
        )


class PausingService(RecordingService):
    async def pause(
        self, organization: str, automation_id: str, reason: str | None = None
    ) -> PauseOut:
        await self._answer("pause", organization, automation_id, reason)
        return PauseOut(id=automation_id, status="paused")


@pytest.fixture
def pausing() -> PausingService:
    return PausingService()


@pytest.fixture
def api_client(pausing: PausingService) -> Iterator[TestClient]:
    application = create_app()
    application.dependency_overrides[api.routes._organization] = lambda: "default"
    application.state.service = pausing
    application.state.runs = pausing
    application.state.idempotency = pausing
    yield TestClient(application, raise_server_exceptions=False)
    application.dependency_overrides.clear()


class TestPauseBody:
    def test_pause_without_a_body_has_no_reason(
        self, api_client: TestClient, pausing: PausingService
    ) -> None:
        response = api_client.post(f"{AUTOMATION}/pause")

        assert response.status_code == 200, response.text
        assert pausing.calls[0][1][2] is None

    def test_pause_passes_the_reason_on(
        self, api_client: TestClient, pausing: PausingService
    ) -> None:
        api_client.post(f"{AUTOMATION}/pause", json={"reason": " Quota review "})

        assert pausing.calls[0][1][2] == "Quota review"

    @pytest.mark.parametrize(
        "body",
        [{"reason": ""}, {"reason": "two\nlines"}, {"reason": "x" * 501}, {"why": 1}],
    )
    def test_a_bad_reason_is_422(
        self, api_client: TestClient, pausing: PausingService, body: dict[str, Any]
    ) -> None:
        response = api_client.post(f"{AUTOMATION}/pause", json=body)

        param = "why" if "why" in body else "reason"
        assert_error(response, 422, "invalid_request_error", param=param)
        assert pausing.calls == []


class TestNotifyValidation:
    @pytest.mark.parametrize(
        ("notify", "param"),
        [
            ({"onFailure": "sometimes"}, "notify.onFailure"),
            ({"afterConsecutiveFailures": 0}, "notify.afterConsecutiveFailures"),
            ({"onRecovery": "yes"}, "notify.onRecovery"),
            ({"onFailures": "final"}, "notify.onFailures"),
        ],
    )
    def test_a_bad_notify_field_is_422_naming_it(
        self, api_client: TestClient, notify: dict[str, Any], param: str
    ) -> None:
        response = api_client.post(
            "/v1/automations", json={**VALID_BODY, "notify": notify}
        )

        assert_error(response, 422, "invalid_request_error", param=param)

    def test_pause_after_zero_failures_is_422(self, api_client: TestClient) -> None:
        response = api_client.post(
            "/v1/automations",
            json={**VALID_BODY, "pauseAfterConsecutiveFailures": 0},
        )

        assert_error(
            response,
            422,
            "invalid_request_error",
            param="pauseAfterConsecutiveFailures",
        )
