"""Every error answer of the contract that shows without a Prefect server.

The real app is driven through Starlette's TestClient. Body and query validation is
reached past authentication by overriding the auth dependency and putting a
recording fake on `app.state.service`, so each test can also show that invalid input
never reaches the service. Authentication and "Prefect unreachable" go through the
real lifespan, with the Prefect client pointed at a closed loopback port.

Prefect reads its settings (PREFECT_API_URL included) into a context when `prefect`
is imported, so setting the environment variable afterwards changes nothing;
`temporary_settings` is the way to point the client elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_CLIENT_MAX_RETRIES,
    temporary_settings,
)

import api.routes
from api.app import create_app
from api.errors import NotFoundError, UnavailableError
from api.prefect_calls import prefect_boundary
from api.run_filters import RunQuery
from api.schemas import AutomationOut, RunList

CLOSED_PREFECT = "http://127.0.0.1:9/api"
WELL_FORMED_KEY = "wj_live_" + "A1b2C3d4" * 5
AUTOMATION = "/v1/automations/auto_0b6e3f3c8a594d6c9a524f1e2d3c4b5a"
VALID_BODY: dict[str, Any] = {
    "name": "Morning digest",
    "systemPrompt": "Summarise yesterday's merged pull requests.",
    "schedule": "0 9 * * 1-5",
}
V1_PATHS = {
    "/v1/automations": {"get", "post"},
    "/v1/automations/{automation_id}": {"get", "put", "delete"},
    "/v1/automations/{automation_id}/activate": {"post"},
    "/v1/automations/{automation_id}/pause": {"post"},
    "/v1/automations/{automation_id}/run": {"post"},
    "/v1/automations/{automation_id}/backfill": {"post"},
    "/v1/automations/{automation_id}/runs": {"get"},
    "/v1/automations/{automation_id}/runs/{run_id}": {"get"},
    "/v1/automations/{automation_id}/runs/{run_id}/cancel": {"post"},
    "/v1/automations/{automation_id}/runs/{run_id}/replay": {"post"},
    "/v1/automations/{automation_id}/runs/{run_id}/logs": {"get"},
    "/v1/automations/{automation_id}/schedule": {"get"},
    "/v1/timezones": {"get"},
    "/v1/tools": {"get"},
}


class Response(Protocol):
    """What the tests read of a TestClient answer (httpx or httpx2)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


class RecordingService:
    """Stands in for AutomationService; records every call it gets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.failure: Exception | None = None

    async def _answer(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        if self.failure is not None:
            raise self.failure

    async def create(self, organization: str, body: Any) -> AutomationOut:
        await self._answer("create", organization, body)
        return AutomationOut(
            id="auto_0b6e3f3c8a594d6c9a524f1e2d3c4b5a",
            name=body.name,
            description=body.description,
            status="active",
            schedule=body.schedule,
            timezone=body.timezone,
            model=body.model,
            system_prompt=body.system_prompt,
            tools=body.tools,
            channels=[],
            last_run_at=None,
            next_run_at=None,
            created_at="2026-04-14T13:00:00Z",
            updated_at="2026-04-14T13:00:00Z",
        )

    async def update(self, organization: str, automation_id: str, body: Any) -> Any:
        await self._answer("update", organization, automation_id, body)
        raise NotFoundError("No such automation.")

    async def read(self, organization: str, automation_id: str) -> Any:
        await self._answer("read", organization, automation_id)
        raise NotFoundError("No such automation.")

    async def list_runs(self, organization: str, *args: Any) -> RunList:
        await self._answer("list_runs", organization, *args)
        return RunList(runs=[], total=0)

    async def list_automations(self, organization: str, *args: Any) -> Any:
        await self._answer("list_automations", organization, *args)
        raise NotFoundError("unused")

    async def delete(self, organization: str, automation_id: str) -> None:
        await self._answer("delete", organization, automation_id)

    @prefect_boundary
    async def activate(self, organization: str, automation_id: str) -> Any:
        await self._answer("activate", organization, automation_id)
        raise httpx.ConnectError("All connection attempts failed")


def assert_error(
    response: Response,
    status: int,
    error_type: str,
    *,
    param: str | None = None,
    code: str | None = None,
    check_leaks: bool = True,
) -> dict[str, Any]:
    """The one error shape: exactly type, code, message and param, nothing leaked."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"type", "code", "message", "param"}
    assert error["type"] == error_type
    assert error["param"] == param
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    if check_leaks:
        assert_nothing_leaked(response)
    return dict(error)


def assert_nothing_leaked(response: Response) -> None:
    assert "traceback" not in response.text.lower()
    assert "prefect" not in response.text.lower()


@pytest.fixture
def service() -> RecordingService:
    return RecordingService()


@pytest.fixture
def app(service: RecordingService) -> Iterator[FastAPI]:
    """The real app, past authentication, with the recording service."""
    application = create_app()
    application.dependency_overrides[api.routes._organization] = lambda: "default"
    application.state.service = service
    application.state.runs = service
    application.state.idempotency = service
    yield application
    application.dependency_overrides.clear()


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def unreachable_prefect() -> Iterator[TestClient]:
    """The real app and lifespan, its Prefect client aimed at a closed port."""
    updates = {PREFECT_API_URL: CLOSED_PREFECT, PREFECT_CLIENT_MAX_RETRIES: 0}
    with (
        temporary_settings(updates=updates),
        TestClient(create_app(), raise_server_exceptions=False) as test_client,
    ):
        yield test_client


# --- authentication ------------------------------------------------------------


class TestAuthentication:
    def test_missing_authorization_is_401_with_challenge(
        self, unreachable_prefect: TestClient
    ) -> None:
        response = unreachable_prefect.get("/v1/automations")

        assert_error(response, 401, "authentication_error", code="missing_api_key")
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize(
        "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", WELL_FORMED_KEY]
    )
    def test_authorization_without_bearer_key_is_401(
        self, unreachable_prefect: TestClient, header: str
    ) -> None:
        response = unreachable_prefect.get(
            "/v1/automations", headers={"Authorization": header}
        )

        assert_error(response, 401, "authentication_error", code="missing_api_key")
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize(
        "key",
        [
            "wj_live_short",
            "wj_test_" + "a" * 32,
            "sk-" + "a" * 40,
            "wj_live_" + "a" * 31,
            "wj_live_" + "a" * 31 + "!",
            "wj_live_" + "a" * 129,
        ],
    )
    def test_malformed_key_is_401_without_asking_prefect(
        self, unreachable_prefect: TestClient, key: str
    ) -> None:
        response = unreachable_prefect.get(
            "/v1/automations", headers={"Authorization": f"Bearer {key}"}
        )

        # a lookup would have hit the closed port and failed with 5xx instead
        assert_error(response, 401, "authentication_error", code="invalid_api_key")
        assert response.headers["www-authenticate"] == "Bearer"

    def test_authentication_comes_before_body_validation(
        self, unreachable_prefect: TestClient
    ) -> None:
        response = unreachable_prefect.post("/v1/automations", json={"name": 1})

        assert_error(response, 401, "authentication_error", code="missing_api_key")

    def test_well_formed_key_while_prefect_is_unreachable_is_503(
        self, unreachable_prefect: TestClient
    ) -> None:
        response = unreachable_prefect.get(
            "/v1/automations", headers={"Authorization": f"Bearer {WELL_FORMED_KEY}"}
        )

        assert_error(response, 503, "unavailable_error", check_leaks=False)
        assert int(response.headers["retry-after"]) > 0


class TestUnavailable:
    def test_unreachable_prefect_in_the_service_is_503_with_retry_after(
        self, client: TestClient, service: RecordingService
    ) -> None:
        response = client.post(f"{AUTOMATION}/activate")

        # the leak check is its own (failing) test below
        error = assert_error(response, 503, "unavailable_error", check_leaks=False)
        assert error["message"] == (
            "The orchestrator is unreachable right now; try again shortly."
        )
        assert response.headers["retry-after"] == "5"
        assert [call[0] for call in service.calls] == ["activate"]

    def test_unavailable_error_carries_retry_after(
        self, client: TestClient, service: RecordingService
    ) -> None:
        service.failure = UnavailableError("Try again shortly.")

        response = client.get(f"{AUTOMATION}/runs")

        assert_error(response, 503, "unavailable_error", check_leaks=False)
        assert response.headers["retry-after"] == "5"

    def test_unavailable_body_does_not_name_the_orchestrator(
        self, client: TestClient
    ) -> None:
        response = client.post(f"{AUTOMATION}/activate")

        assert response.status_code == 503
        assert_nothing_leaked(response)

    def test_unexpected_error_is_500_without_internals(
        self, client: TestClient, service: RecordingService
    ) -> None:
        service.failure = RuntimeError(
            "prefect.exceptions.ObjectNotFound at /srv/prefect/api/deployments"
        )

        response = client.get(f"{AUTOMATION}/runs")

        error = assert_error(response, 500, "api_error", code="internal_error")
        assert error["message"] == "An unexpected error occurred."


# --- malformed and oversized requests ------------------------------------------


class TestMalformedRequests:
    @pytest.mark.parametrize(
        "raw", [b"{bad", b'{"name": "a",}', b"\xff\xfe", b'{"name": "a"', b"nul"]
    )
    def test_malformed_json_is_400(
        self, client: TestClient, service: RecordingService, raw: bytes
    ) -> None:
        response = client.post(
            "/v1/automations",
            content=raw,
            headers={"Content-Type": "application/json"},
        )

        error = assert_error(
            response, 400, "invalid_request_error", code="malformed_request"
        )
        assert error["message"] == "The request body is not valid JSON."
        assert service.calls == []

    def test_missing_body_is_422_asking_for_one(
        self, client: TestClient, service: RecordingService
    ) -> None:
        response = client.post("/v1/automations")

        error = assert_error(response, 422, "invalid_request_error")
        assert error["message"] == "A JSON request body is required."
        assert service.calls == []

    def test_body_that_is_not_an_object_is_422(
        self, client: TestClient, service: RecordingService
    ) -> None:
        response = client.post("/v1/automations", json=[VALID_BODY])

        assert_error(response, 422, "invalid_request_error")
        assert service.calls == []

    def test_body_over_256_kib_is_413_before_authentication(self) -> None:
        client = TestClient(create_app(), raise_server_exceptions=False)
        body = json.dumps({**VALID_BODY, "systemPrompt": "x" * (256 * 1024)})

        response = client.post(
            "/v1/automations",
            content=body,
            headers={"Content-Type": "application/json"},
        )

        assert_error(response, 413, "invalid_request_error", code="payload_too_large")

    def test_body_of_exactly_256_kib_is_not_refused_for_size(
        self, client: TestClient
    ) -> None:
        prefix = json.dumps({**VALID_BODY, "description": ""})[:-1]
        padding = 256 * 1024 - len(prefix) - len(', "x": ""}')
        raw = f'{prefix}, "x": "{"y" * padding}"}}'.encode()
        assert len(raw) == 256 * 1024

        response = client.post(
            "/v1/automations", content=raw, headers={"Content-Type": "application/json"}
        )

        assert_error(response, 422, "invalid_request_error", param="x")

    def test_non_numeric_content_length_is_400(self, client: TestClient) -> None:
        response = client.post(
            "/v1/automations",
            content=b"{}",
            headers={"Content-Type": "application/json", "Content-Length": "2x"},
        )

        assert_error(response, 400, "invalid_request_error")

    def test_chunked_body_over_256_kib_is_413(
        self, client: TestClient, service: RecordingService
    ) -> None:
        def chunks() -> Iterator[bytes]:
            yield b'{"name": "n", "systemPrompt": "'
            for _ in range(300):
                yield b"x" * 1024
            yield b'", "schedule": "@daily"}'

        response = client.post(
            "/v1/automations",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )

        assert_error(response, 413, "invalid_request_error")


class TestUnknownRoutes:
    @pytest.mark.parametrize(
        "path", ["/", "/v2/automations", "/v1/automation", f"{AUTOMATION}/history"]
    )
    def test_unknown_route_is_404_in_the_error_shape(
        self, client: TestClient, path: str
    ) -> None:
        response = client.get(path)

        assert_error(response, 404, "not_found_error", code="not_found")

    def test_wrong_method_answers_in_the_error_shape(self, client: TestClient) -> None:
        response = client.patch(AUTOMATION, json={})

        assert_error(response, 405, "invalid_request_error")

    def test_wrong_method_names_the_allowed_methods(self, client: TestClient) -> None:
        response = client.patch(AUTOMATION, json={})

        # Starlette names the methods of the first matching route only
        assert "GET" in response.headers.get("allow", "")
        assert response.json()["error"]["code"] != "internal_error"


# --- body validation -----------------------------------------------------------


def with_changes(**changes: Any) -> dict[str, Any]:
    return {**VALID_BODY, **changes}


def without(field: str) -> dict[str, Any]:
    return {key: value for key, value in VALID_BODY.items() if key != field}


class TestCreateValidation:
    def test_valid_body_reaches_the_service(
        self, client: TestClient, service: RecordingService
    ) -> None:
        response = client.post("/v1/automations", json=VALID_BODY)

        assert response.status_code == 201, response.text
        [(method, (organization, body))] = service.calls
        assert (method, organization) == ("create", "default")
        assert body.system_prompt == VALID_BODY["systemPrompt"]
        assert (body.timezone, body.model) == ("UTC", "standard")

    @pytest.mark.parametrize(
        ("body", "param", "fragment"),
        [
            (without("name"), "name", "required"),
            (without("systemPrompt"), "systemPrompt", "required"),
            (without("schedule"), "schedule", "required"),
            (with_changes(name="   "), "name", "at least 1"),
            (with_changes(name="n" * 201), "name", "at most 200"),
            (with_changes(systemPrompt="x" * 100_001), "systemPrompt", "100000"),
            (with_changes(model=""), "model", "at least 1"),
            (with_changes(schedule="0 0 9 * * *"), "schedule", "got 6"),
            (with_changes(schedule="0 0 9 * * * 2026"), "schedule", "got 7"),
            (with_changes(schedule="@reboot"), "schedule", "@reboot"),
            (with_changes(schedule="@every 5m"), "schedule", "*/15"),
            (with_changes(schedule="0 0 30 2 *"), "schedule", "never fires"),
            (with_changes(schedule="30 10 ? * 6"), "schedule", "'?'"),
            (with_changes(schedule=None), "schedule", "string"),
            (with_changes(timezone="Mars/Olympus"), "timezone", "IANA"),
            (with_changes(timezone=""), "timezone", "empty"),
            (
                with_changes(timezone="america/new_york"),
                "timezone",
                "America/New_York",
            ),
            (with_changes(tools=["github", "github"]), "tools", "more than once"),
            (with_changes(tools=["GitHub"]), "tools", "lower case"),
            (with_changes(tools="github"), "tools", "list"),
            (
                with_changes(channels=[{"type": "slack", "channel": "docs team"}]),
                "channels[0].channel",
                "'docs team'",
            ),
            (
                with_changes(
                    channels=[
                        {"type": "slack", "channel": "#ok"},
                        {"type": "email", "to": ["a@example.com", "not-an-address"]},
                    ]
                ),
                "channels[1].to",
                "'not-an-address'",
            ),
            (
                with_changes(channels=[{"type": "email", "to": []}]),
                "channels[0].to",
                "at least 1",
            ),
            (
                with_changes(
                    channels=[{"type": "webhook", "url": "ftp://files.example.com/"}]
                ),
                "channels[0].url",
                "http(s)",
            ),
            (
                with_changes(channels=[{"type": "webhook", "url": "https://"}]),
                "channels[0].url",
                "http(s)",
            ),
            (
                with_changes(
                    channels=[{"type": "webhook", "url": "http://127.0.0.1:99999/h"}]
                ),
                "channels[0].url",
                "port outside 1-65535",
            ),
            (
                with_changes(
                    channels=[{"type": "webhook", "url": "https://u:pw@a.example/h"}]
                ),
                "channels[0].url",
                "must not carry a user or password",
            ),
            (
                with_changes(
                    channels=[
                        {"type": "webhook", "url": "https://a.example", "secret": ""}
                    ]
                ),
                "channels[0].secret",
                "at least 1",
            ),
            (
                with_changes(channels=[{"type": "slack", "channel": "#a"}] * 11),
                "channels",
                "at most 10",
            ),
        ],
    )
    def test_invalid_field_is_422_naming_it(
        self,
        client: TestClient,
        service: RecordingService,
        body: dict[str, Any],
        param: str,
        fragment: str,
    ) -> None:
        response = client.post("/v1/automations", json=body)

        error = assert_error(response, 422, "invalid_request_error", param=param)
        assert error["message"].startswith(f"{param}: ")
        assert fragment in error["message"]
        assert service.calls == []

    def test_misspelt_field_is_422_suggesting_the_right_name(
        self, client: TestClient, service: RecordingService
    ) -> None:
        response = client.post("/v1/automations", json=with_changes(schedlue="@daily"))

        error = assert_error(
            response,
            422,
            "invalid_request_error",
            param="schedlue",
            code="unknown_field",
        )
        assert "did you mean 'schedule'?" in error["message"]
        assert service.calls == []

    def test_unrelated_unknown_field_gets_no_suggestion(
        self, client: TestClient
    ) -> None:
        response = client.post("/v1/automations", json=with_changes(colour="blue"))

        error = assert_error(
            response, 422, "invalid_request_error", param="colour", code="unknown_field"
        )
        assert error["message"] == "colour: unknown field."

    def test_misspelt_channel_field_is_not_told_to_use_channels(
        self, client: TestClient
    ) -> None:
        channel = {"type": "webhook", "url": "https://a.example/", "secrte": "s"}

        response = client.post("/v1/automations", json=with_changes(channels=[channel]))

        error = assert_error(
            response, 422, "invalid_request_error", param="channels[0].secrte"
        )
        assert "'channels'" not in error["message"]

    def test_unknown_channel_type_is_422(
        self, client: TestClient, service: RecordingService
    ) -> None:
        channel = {"type": "sms", "to": "+15550100"}

        response = client.post("/v1/automations", json=with_changes(channels=[channel]))

        error = assert_error(
            response, 422, "invalid_request_error", param="channels[0].type"
        )
        assert "'slack', 'email', 'webhook'" in error["message"]
        assert service.calls == []

    def test_snake_case_field_is_not_accepted(
        self, client: TestClient, service: RecordingService
    ) -> None:
        body = {**without("systemPrompt"), "system_prompt": "p"}

        response = client.post("/v1/automations", json=body)

        assert response.status_code == 422
        assert service.calls == []


class TestUpdateValidation:
    @pytest.mark.parametrize(
        "field", ["name", "systemPrompt", "model", "schedule", "timezone", "tools"]
    )
    def test_null_for_a_required_field_is_422(
        self, client: TestClient, service: RecordingService, field: str
    ) -> None:
        response = client.put(AUTOMATION, json={field: None})

        error = assert_error(response, 422, "invalid_request_error", param=field)
        assert "must not be null" in error["message"]
        assert service.calls == []

    def test_misspelt_field_is_422(
        self, client: TestClient, service: RecordingService
    ) -> None:
        response = client.put(AUTOMATION, json={"timezone": "UTC", "schedlue": "x"})

        assert_error(
            response,
            422,
            "invalid_request_error",
            param="schedlue",
            code="unknown_field",
        )
        assert service.calls == []

    def test_invalid_schedule_is_422(
        self, client: TestClient, service: RecordingService
    ) -> None:
        response = client.put(AUTOMATION, json={"schedule": "0 0 31 4,6,9,11 *"})

        error = assert_error(response, 422, "invalid_request_error", param="schedule")
        assert "never fires" in error["message"]
        assert service.calls == []

    def test_null_description_is_passed_on(
        self, client: TestClient, service: RecordingService
    ) -> None:
        response = client.put(AUTOMATION, json={"description": None})

        assert_error(response, 404, "not_found_error")
        [(method, (_, automation, body))] = service.calls
        assert (method, automation) == ("update", AUTOMATION.rsplit("/", 1)[1])
        assert "description" in body.model_fields_set


# --- query validation ----------------------------------------------------------


class TestRunsQueryValidation:
    @pytest.mark.parametrize(
        ("query", "param"),
        [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=-5", "limit"),
            ("limit=ten", "limit"),
            ("offset=-1", "offset"),
            ("offset=1.5", "offset"),
            ("status=bogus", "status"),
            ("status=SUCCESS", "status"),
            ("limit=20&status=completed", "status"),
        ],
    )
    def test_invalid_query_parameter_is_422_naming_it(
        self, client: TestClient, service: RecordingService, query: str, param: str
    ) -> None:
        response = client.get(f"{AUTOMATION}/runs?{query}")

        error = assert_error(response, 422, "invalid_request_error", param=param)
        assert error["message"].startswith(f"{param}: ")
        assert service.calls == []

    def test_defaults_are_limit_20_offset_0_no_filter(
        self, client: TestClient, service: RecordingService
    ) -> None:
        response = client.get(f"{AUTOMATION}/runs")

        assert response.status_code == 200
        assert response.json() == {"runs": [], "total": 0}
        [(_, arguments)] = service.calls
        assert arguments[2:] == (20, 0, RunQuery())

    @pytest.mark.parametrize(
        "query", ["limit=1", "limit=100", "offset=0", "status=running"]
    )
    def test_edge_values_are_accepted(
        self, client: TestClient, service: RecordingService, query: str
    ) -> None:
        response = client.get(f"{AUTOMATION}/runs?{query}")

        assert response.status_code == 200
        assert len(service.calls) == 1


# --- the OpenAPI document ------------------------------------------------------


class TestOpenApi:
    def test_document_lists_every_v1_path_and_method(self) -> None:
        client = TestClient(create_app())

        document = client.get("/openapi.json").json()

        paths = document["paths"]
        assert set(paths) == set(V1_PATHS)
        for path, methods in V1_PATHS.items():
            assert set(paths[path]) == methods, path

    def test_every_operation_documents_the_error_body(self) -> None:
        document = TestClient(create_app()).get("/openapi.json").json()

        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                responses = operation["responses"]
                for status in ("401", "404", "422", "503"):
                    assert status in responses, (method, path, status)
                schema = responses["401"]["content"]["application/json"]["schema"]
                assert schema["required"] == ["error"]
