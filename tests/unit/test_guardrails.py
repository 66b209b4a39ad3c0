"""Guardrail fields of an automation: validation, storage in the flow's parameter,
and the answer, without a Prefect server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.routes
from api.app import create_app
from api.guardrails import guardrails_out, stored_guardrails
from api.schemas import AutomationCreate, AutomationUpdate
from tests.unit.test_errors import VALID_BODY, RecordingService, assert_error

AUTOMATION = "/v1/automations/auto_0b6e3f3c8a594d6c9a524f1e2d3c4b5a"


@pytest.fixture
def recording() -> RecordingService:
    return RecordingService()


@pytest.fixture
def api_client(recording: RecordingService) -> Iterator[TestClient]:
    application = create_app()
    application.dependency_overrides[api.routes._organization] = lambda: "default"
    application.state.service = recording
    application.state.runs = recording
    application.state.idempotency = recording
    yield TestClient(application, raise_server_exceptions=False)
    application.dependency_overrides.clear()


class TestRunCapValidation:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("maxTokens", 0),
            ("maxTokens", -5),
            ("maxTokens", "1000"),
            ("maxTokens", 1000.5),
            ("maxTokens", True),
            ("maxTokens", 100_000_001),
            ("maxCostUsd", 0),
            ("maxCostUsd", -0.5),
            ("maxCostUsd", "1.5"),
            ("maxCostUsd", False),
            ("maxCostUsd", 1e9),
        ],
    )
    def test_a_cap_that_is_not_a_positive_number_is_422_naming_it(
        self,
        api_client: TestClient,
        recording: RecordingService,
        field: str,
        value: Any,
    ) -> None:
        response = api_client.post("/v1/automations", json={**VALID_BODY, field: value})

        assert_error(response, 422, "invalid_request_error", param=field)
        assert recording.calls == []

    def test_caps_reach_the_service_as_numbers(
        self, api_client: TestClient, recording: RecordingService
    ) -> None:
        body = {**VALID_BODY, "maxTokens": 5000, "maxCostUsd": 1}

        response = api_client.post("/v1/automations", json=body)

        assert response.status_code == 201, response.text
        sent = recording.calls[0][1][1]
        assert (sent.max_tokens, sent.max_cost_usd) == (5000, 1.0)

    def test_null_cap_on_update_reaches_the_service_to_remove_it(
        self, api_client: TestClient, recording: RecordingService
    ) -> None:
        api_client.put(AUTOMATION, json={"maxTokens": None})

        sent = recording.calls[0][1][2]
        assert "max_tokens" in sent.model_fields_set
        assert sent.max_tokens is None

    def test_misspelt_cap_is_422_suggesting_the_field(
        self, api_client: TestClient
    ) -> None:
        response = api_client.post(
            "/v1/automations", json={**VALID_BODY, "maxToken": 10}
        )

        error = assert_error(response, 422, "invalid_request_error", param="maxToken")
        assert "did you mean 'maxTokens'?" in error["message"]

    def test_update_schema_documents_caps_as_nullable(self) -> None:
        properties = AutomationUpdate.model_json_schema(by_alias=True)["properties"]

        assert {"type": "null"} in properties["maxTokens"]["anyOf"]
        assert "anyOf" not in properties["name"]


class TestStoredGuardrails:
    def test_create_stores_only_the_caps_given(self) -> None:
        body = AutomationCreate.model_validate({**VALID_BODY, "maxTokens": 900})

        assert stored_guardrails(body) == {"max_tokens": 900}

    def test_update_replaces_sent_caps_and_keeps_the_others(self) -> None:
        current = {"max_tokens": 900, "max_cost_usd": 0.5}
        body = AutomationUpdate.model_validate({"maxCostUsd": 2})

        assert stored_guardrails(body, current) == {
            "max_tokens": 900,
            "max_cost_usd": 2.0,
        }

    def test_update_with_null_removes_the_cap(self) -> None:
        current = {"max_tokens": 900, "max_cost_usd": 0.5}
        body = AutomationUpdate.model_validate({"maxTokens": None})

        assert stored_guardrails(body, current) == {"max_cost_usd": 0.5}

    def test_an_automation_without_guardrails_answers_nulls(self) -> None:
        assert guardrails_out({"name": "Made before guardrails"}, None, False) == {
            "max_tokens": None,
            "max_cost_usd": None,
            "pause_after_consecutive_failures": None,
            "notify": None,
            "paused_reason": None,
            "monthly_budget_usd": None,
            "catch_up": "latest",
        }

    def test_notify_is_stored_with_its_defaults(self) -> None:
        body = AutomationCreate.model_validate(
            {**VALID_BODY, "notify": {"afterConsecutiveFailures": 3}}
        )

        assert stored_guardrails(body) == {
            "notify": {
                "on_failure": "final",
                "after_consecutive_failures": 3,
                "on_recovery": False,
            }
        }

    def test_paused_reason_shows_only_while_paused(self) -> None:
        stats = {"pausedReason": "quota review"}

        assert guardrails_out({}, stats, True)["paused_reason"] == "quota review"
        assert guardrails_out({}, stats, False)["paused_reason"] is None
