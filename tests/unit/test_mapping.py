"""The mapping between Prefect's objects and the API's, both ways, without a server.

Covers flows.ids (public ids), flows.record (the run record carried in artifact
metadata) and api.mapping (deployments to automations, flow runs to runs).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest
from prefect.client.schemas.objects import (
    Artifact,
    DeploymentSchedule,
    FlowRun,
    State,
    StateType,
)
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule
from prefect.server.schemas.actions import ArtifactCreate as ServerArtifactCreate

from api.mapping import (
    RUN_STATE_TYPES,
    automation_out,
    channel_out,
    next_run_at,
    run_out,
    run_status,
    store_channel,
    stored_channels,
)
from api.schedules import next_fire_time
from api.schemas import (
    EmailChannelIn,
    SlackChannelIn,
    WebhookChannelIn,
)
from flows.ids import (
    automation_id,
    deployment_id_of,
    flow_run_id_of,
    run_id,
    stats_variable_name,
)
from flows.record import (
    RECORD_KEY,
    Delivery,
    RunRecord,
    artifact_payload,
    decode_metadata,
    encode_metadata,
    timestamp,
)
from flows.triggers import SCHEDULED_TAG

DEPLOYMENT_ID = UUID("0b6e3f3c-8a59-4d6c-9a52-4f1e2d3c4b5a")
FLOW_RUN_ID = UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")
STARTED = datetime(2026, 4, 14, 13, 0, 0, 750_000, tzinfo=UTC)
COMPLETED = datetime(2026, 4, 14, 13, 0, 12, 250_000, tzinfo=UTC)
SECRET_BLOCK = "workjet-webhook-secret-5f0c1d"


# --- factories -----------------------------------------------------------------


def make_record(**changes: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "tokens_input": 1_000,
        "tokens_output": 250,
        "cache_write_tokens": 200,
        "cache_read_tokens": 3_000,
        "estimated_cost": 0.007485,
        "stop_reason": "end_turn",
        "has_output": True,
        "deliveries": [
            Delivery(
                type="webhook",
                target="https://hooks.example.com/workjet",
                status="delivered",
                attempts=2,
                at="2026-04-14T13:00:12Z",
            )
        ],
    }
    fields.update(changes)
    return RunRecord(**fields)


def make_artifact(record: RunRecord, output: str = "The report.") -> Artifact:
    return Artifact(
        flow_run_id=FLOW_RUN_ID,
        type="markdown",
        data=output,
        metadata_=encode_metadata(record),
    )


def make_flow_run(
    state_type: StateType,
    *,
    message: str | None = None,
    tags: list[str] | None = None,
    start_time: datetime | None = STARTED,
    end_time: datetime | None = COMPLETED,
    expected_start_time: datetime | None = STARTED,
) -> FlowRun:
    return FlowRun.model_validate(
        {
            "id": FLOW_RUN_ID,
            "flow_id": uuid4(),
            "deployment_id": DEPLOYMENT_ID,
            "tags": tags if tags is not None else [],
            "state": State(type=state_type, message=message),
            "start_time": start_time,
            "end_time": end_time,
            "expected_start_time": expected_start_time,
            # A run with a start time has run once, as Prefect counts it.
            "run_count": 1 if start_time is not None else 0,
        }
    )


def test_run_cancelled_before_it_ran_keeps_its_queued_time() -> None:
    queued = datetime(2026, 4, 14, 13, 0, 0, tzinfo=UTC)
    flow_run = make_flow_run(
        StateType.CANCELLED,
        start_time=queued + timedelta(seconds=17),
        end_time=queued + timedelta(seconds=17),
        expected_start_time=queued,
    ).model_copy(update={"run_count": 0})

    run = run_out(flow_run, None)

    assert run.started_at == "2026-04-14T13:00:00Z"
    assert (run.status, run.error) == ("failure", "cancelled")


def make_deployment(
    *,
    cron: str = "30 8 * * 1-5",
    zone: str = "America/New_York",
    paused: bool = False,
    schedule_active: bool = True,
    parameters: dict[str, Any] | None = None,
    schedules: bool = True,
) -> DeploymentResponse:
    if parameters is None:
        parameters = {
            "name": "Morning digest",
            "system_prompt": "Summarise yesterday's merged pull requests.",
            "model": "premium",
            "tools": ["github", "filesystem"],
            "channels": [
                {"type": "slack", "channel": "#docs-team"},
                {"type": "email", "to": ["a@example.com"], "subject": "Digest"},
                {
                    "type": "webhook",
                    "url": "https://hooks.example.com/workjet",
                    "secret_block": SECRET_BLOCK,
                },
                {"type": "webhook", "url": "https://plain.example.com/in"},
            ],
        }
    deployment_schedules = [
        DeploymentSchedule(
            deployment_id=DEPLOYMENT_ID,
            schedule=CronSchedule(cron=cron, timezone=zone),
            active=schedule_active,
        )
    ]
    return DeploymentResponse.model_validate(
        {
            "id": DEPLOYMENT_ID,
            "name": "workjet-3f1a",
            "flow_id": uuid4(),
            "description": "Posts the digest every weekday morning.",
            "paused": paused,
            "tags": ["workjet", "workjet-org:default"],
            "parameters": parameters,
            "schedules": deployment_schedules if schedules else [],
            "created": datetime(2026, 4, 1, 9, 15, 30, 123_456, tzinfo=UTC),
            "updated": datetime(2026, 4, 2, 10, 0, 5, 999_999, tzinfo=UTC),
        }
    )


# --- ids -----------------------------------------------------------------------


class TestIds:
    def test_automation_id_round_trips_to_the_deployment_id(self) -> None:
        public = automation_id(DEPLOYMENT_ID)

        assert public == "auto_0b6e3f3c8a594d6c9a524f1e2d3c4b5a"
        assert deployment_id_of(public) == DEPLOYMENT_ID

    def test_run_id_round_trips_to_the_flow_run_id(self) -> None:
        public = run_id(FLOW_RUN_ID)

        assert public == "run_7c9e6679742540de944be07fc1f90ae7"
        assert flow_run_id_of(public) == FLOW_RUN_ID

    def test_random_ids_round_trip(self) -> None:
        for _ in range(50):
            identifier = uuid4()
            assert deployment_id_of(automation_id(identifier)) == identifier
            assert flow_run_id_of(run_id(identifier)) == identifier

    @pytest.mark.parametrize(
        "garbage",
        [
            "",
            "auto_",
            "auto_xyz",
            "auto_" + "0B6E3F3C8A594D6C9A524F1E2D3C4B5A",
            "auto_0b6e3f3c-8a59-4d6c-9a52-4f1e2d3c4b5a",
            "auto_0b6e3f3c8a594d6c9a524f1e2d3c4b5",
            "auto_0b6e3f3c8a594d6c9a524f1e2d3c4b5a0",
            "0b6e3f3c8a594d6c9a524f1e2d3c4b5a",
            "run_0b6e3f3c8a594d6c9a524f1e2d3c4b5a",
            " auto_0b6e3f3c8a594d6c9a524f1e2d3c4b5a",
            "../",
            "auto_../../etc/passwd",
            "AUTO_0b6e3f3c8a594d6c9a524f1e2d3c4b5a",
        ],
    )
    def test_garbage_automation_id_is_none(self, garbage: str) -> None:
        assert deployment_id_of(garbage) is None

    @pytest.mark.parametrize(
        "garbage",
        [
            "",
            "run_",
            "run_xyz",
            "run_" + "7C9E6679742540DE944BE07FC1F90AE7",
            "auto_7c9e6679742540de944be07fc1f90ae7",
            "run_7c9e6679742540de944be07fc1f90ae",
            "../",
            "run_../",
        ],
    )
    def test_garbage_run_id_is_none(self, garbage: str) -> None:
        assert flow_run_id_of(garbage) is None

    def test_id_with_trailing_newline_is_none(self) -> None:
        assert deployment_id_of(automation_id(DEPLOYMENT_ID) + "\n") is None
        assert flow_run_id_of(run_id(FLOW_RUN_ID) + "\n") is None

    def test_stats_variable_name_is_a_valid_prefect_variable_name(self) -> None:
        name = stats_variable_name(DEPLOYMENT_ID)

        assert name == "workjet_stats_0b6e3f3c8a594d6c9a524f1e2d3c4b5a"


# --- run status ----------------------------------------------------------------


class TestRunStatus:
    @pytest.mark.parametrize(
        ("state_type", "status"),
        [
            (StateType.SCHEDULED, "running"),
            (StateType.PENDING, "running"),
            (StateType.RUNNING, "running"),
            (StateType.PAUSED, "running"),
            (StateType.CANCELLING, "running"),
            (StateType.COMPLETED, "success"),
            (StateType.FAILED, "failure"),
            (StateType.CRASHED, "failure"),
            (StateType.CANCELLED, "failure"),
        ],
    )
    def test_state_type_maps_to_status(
        self, state_type: StateType, status: str
    ) -> None:
        assert run_status(state_type) == status

    def test_every_state_type_has_a_status(self) -> None:
        assert {run_status(state_type) for state_type in StateType} == {
            "success",
            "failure",
            "running",
        }
        mapped = [s for states in RUN_STATE_TYPES.values() for s in states]
        assert sorted(mapped) == sorted(StateType)

    def test_run_without_state_is_running(self) -> None:
        assert run_status(None) == "running"


# --- flow run to run -----------------------------------------------------------


class TestRunOut:
    def test_completed_run_reports_every_field(self) -> None:
        flow_run = make_flow_run(StateType.COMPLETED, tags=[SCHEDULED_TAG])

        run = run_out(flow_run, make_artifact(make_record()))

        assert run.model_dump(by_alias=True) == {
            "id": "run_7c9e6679742540de944be07fc1f90ae7",
            "automationId": "auto_0b6e3f3c8a594d6c9a524f1e2d3c4b5a",
            "status": "success",
            "trigger": "schedule",
            "startedAt": "2026-04-14T13:00:00Z",
            "completedAt": "2026-04-14T13:00:12Z",
            "duration": 11_500,
            "tokensInput": 4_200,
            "tokensOutput": 250,
            "estimatedCost": 0.007485,
            "output": "The report.",
            "model": "claude-sonnet-4-5",
            "error": None,
            "deliveries": [
                {
                    "type": "webhook",
                    "target": "https://hooks.example.com/workjet",
                    "status": "delivered",
                    "attempts": 2,
                    "error": None,
                    "at": "2026-04-14T13:00:12Z",
                }
            ],
            "toolCalls": [],
            "replayOf": None,
        }

    def test_duration_is_whole_milliseconds(self) -> None:
        flow_run = make_flow_run(
            StateType.COMPLETED,
            start_time=datetime(2026, 4, 14, 13, 0, 0, tzinfo=UTC),
            end_time=datetime(2026, 4, 14, 13, 0, 1, 234_567, tzinfo=UTC),
        )

        run = run_out(flow_run, make_artifact(make_record()))

        assert run.duration == 1_234
        assert isinstance(run.duration, int)

    def test_times_are_converted_to_utc(self) -> None:
        berlin = datetime(2026, 4, 14, 17, 0, 0, tzinfo=ZoneInfo("Europe/Berlin"))
        flow_run = make_flow_run(
            StateType.COMPLETED,
            start_time=berlin,
            end_time=berlin + timedelta(seconds=3),
        )

        run = run_out(flow_run, make_artifact(make_record()))

        assert run.started_at == "2026-04-14T15:00:00Z"
        assert run.completed_at == "2026-04-14T15:00:03Z"

    def test_run_without_scheduled_tag_is_manual(self) -> None:
        flow_run = make_flow_run(StateType.COMPLETED, tags=["workjet", "manual-ish"])

        assert run_out(flow_run, make_artifact(make_record())).trigger == "manual"

    def test_running_run_has_no_completion_output_or_error(self) -> None:
        flow_run = make_flow_run(
            StateType.RUNNING, message="still thinking", end_time=None
        )

        run = run_out(flow_run, None)

        assert run.status == "running"
        assert run.started_at == "2026-04-14T13:00:00Z"
        assert (run.completed_at, run.duration, run.output, run.error) == (
            None,
            None,
            None,
            None,
        )
        assert (run.tokens_input, run.tokens_output, run.estimated_cost) == (0, 0, 0.0)
        assert run.model is None
        assert run.deliveries == []

    def test_output_is_null_while_running_even_with_an_artifact(self) -> None:
        flow_run = make_flow_run(StateType.RUNNING, end_time=None)

        run = run_out(flow_run, make_artifact(make_record(), output="partial"))

        assert run.output is None
        assert run.completed_at is None
        assert run.tokens_input == 4_200

    def test_queued_run_is_running_from_its_expected_start(self) -> None:
        expected = datetime(2026, 4, 14, 12, 59, 59, 900_000, tzinfo=UTC)
        flow_run = make_flow_run(
            StateType.PENDING,
            start_time=None,
            end_time=None,
            expected_start_time=expected,
        )

        run = run_out(flow_run, None)

        assert run.status == "running"
        assert run.started_at == "2026-04-14T12:59:59Z"

    def test_failed_run_reports_the_recorded_error_and_keeps_its_output(
        self,
    ) -> None:
        error = "delivery to webhook https://hooks.example.com/workjet failed: HTTP 500"
        record = make_record(
            error=error,
            deliveries=[
                Delivery(
                    type="webhook",
                    target="https://hooks.example.com/workjet",
                    status="failed",
                    attempts=3,
                    error="HTTP 500",
                )
            ],
        )
        flow_run = make_flow_run(StateType.FAILED, message="RunFailedError: other")

        run = run_out(flow_run, make_artifact(record, output="The report."))

        assert run.status == "failure"
        assert run.error == error
        assert run.output == "The report."
        assert run.tokens_input == 4_200
        assert run.estimated_cost == 0.007485
        assert [d.model_dump() for d in run.deliveries] == [
            {
                "type": "webhook",
                "target": "https://hooks.example.com/workjet",
                "status": "failed",
                "attempts": 3,
                "error": "HTTP 500",
                "at": None,
            }
        ]

    def test_crashed_run_without_artifact_reports_the_state_message(self) -> None:
        message = "Flow run infrastructure exited with non-zero status code -9."
        flow_run = make_flow_run(StateType.CRASHED, message=message)

        run = run_out(flow_run, None)

        assert run.status == "failure"
        assert run.error == message
        assert run.output is None
        assert run.tokens_input == 0
        assert run.completed_at == "2026-04-14T13:00:12Z"

    def test_crashed_run_without_message_reports_the_state_name(self) -> None:
        run = run_out(make_flow_run(StateType.CRASHED), None)

        assert run.error == "Crashed"

    def test_cancelled_run_reports_cancelled_error(self) -> None:
        flow_run = make_flow_run(
            StateType.CANCELLED, message="Cancelled by the deployment being deleted"
        )

        run = run_out(flow_run, None)

        assert run.status == "failure"
        assert run.error == "cancelled"

    def test_successful_run_never_reports_an_error(self) -> None:
        flow_run = make_flow_run(StateType.COMPLETED, message="All states completed.")

        run = run_out(flow_run, make_artifact(make_record(error="stale")))

        assert run.error is None

    def test_artifact_without_a_record_gives_zero_tokens_and_no_output(self) -> None:
        artifact = Artifact(flow_run_id=FLOW_RUN_ID, data="text", metadata_=None)

        run = run_out(make_flow_run(StateType.COMPLETED), artifact)

        assert run.tokens_input == 0
        assert run.output is None
        assert run.model is None

    def test_record_without_output_gives_null_output(self) -> None:
        record = make_record(has_output=False, error="the model returned no output")

        run = run_out(make_flow_run(StateType.FAILED), make_artifact(record, ""))

        assert run.output is None
        assert run.error == "the model returned no output"

    def test_artifact_payload_round_trips_through_run_out(self) -> None:
        record = make_record()
        payload = artifact_payload(record, "# Heading\n\nBody")
        artifact = Artifact(flow_run_id=FLOW_RUN_ID, **payload)

        run = run_out(make_flow_run(StateType.COMPLETED), artifact)

        assert payload["type"] == "markdown"
        assert run.output == "# Heading\n\nBody"
        assert run.model == "claude-sonnet-4-5"


# --- the run record in artifact metadata ---------------------------------------


def long_record() -> RunRecord:
    deliveries = [
        Delivery(
            type="webhook",
            target=f"https://hooks{index}.example.com/" + "p" * 200,
            status="failed",
            attempts=3,
            error=f"HTTP 50{index % 4} " + "é…" * 60,
            at="2026-04-14T13:00:12Z",
        )
        for index in range(40)
    ]
    return make_record(
        error="delivery failed: " + "x" * 2_500 + " 🚨 end",
        stop_reason="max_tokens",
        deliveries=deliveries,
    )


class TestRecordMetadata:
    def test_long_record_round_trips(self) -> None:
        record = long_record()

        assert decode_metadata(encode_metadata(record)) == record

    def test_every_metadata_value_fits_prefect_limit(self) -> None:
        metadata = encode_metadata(long_record())

        assert len(metadata) > 10
        assert all(len(value) <= 500 for value in metadata.values())
        assert all(len(key) <= 500 for key in metadata)

    def test_record_survives_prefects_metadata_truncation(self) -> None:
        record = long_record()

        stored = ServerArtifactCreate(
            type="markdown", data="out", metadata_=encode_metadata(record)
        )

        assert stored.metadata_ is not None
        assert decode_metadata(stored.metadata_) == record

    def test_short_record_is_one_chunk(self) -> None:
        metadata = encode_metadata(RunRecord())

        assert metadata[RECORD_KEY] == "1"
        assert set(metadata) == {RECORD_KEY, f"{RECORD_KEY}.0"}
        assert decode_metadata(metadata) == RunRecord()

    def test_missing_chunk_gives_none(self) -> None:
        metadata = encode_metadata(long_record())
        del metadata[f"{RECORD_KEY}.3"]

        assert decode_metadata(metadata) is None

    def test_corrupted_chunk_gives_none(self) -> None:
        metadata = encode_metadata(long_record())
        metadata[f"{RECORD_KEY}.0"] = "#" + metadata[f"{RECORD_KEY}.0"][1:]

        assert decode_metadata(metadata) is None

    def test_cut_last_chunk_gives_none(self) -> None:
        metadata = encode_metadata(long_record())
        last = f"{RECORD_KEY}.{int(metadata[RECORD_KEY]) - 1}"
        metadata[last] = metadata[last][:-3] + "..."

        assert decode_metadata(metadata) is None

    @pytest.mark.parametrize("count", ["two", "", "0", "-1", "999"])
    def test_wrong_chunk_count_gives_none(self, count: str) -> None:
        metadata = encode_metadata(long_record())
        metadata[RECORD_KEY] = count

        assert decode_metadata(metadata) is None

    def test_json_of_the_wrong_shape_gives_none(self) -> None:
        bad_type = {RECORD_KEY: "1", f"{RECORD_KEY}.0": '{"tokens_input": "many"}'}
        not_object = {RECORD_KEY: "1", f"{RECORD_KEY}.0": "[1, 2]"}

        assert decode_metadata(bad_type) is None
        assert decode_metadata(not_object) is None

    @pytest.mark.parametrize(
        "metadata", [None, {}, {"other": "value"}, {f"{RECORD_KEY}.0": "{}"}]
    )
    def test_metadata_without_a_record_gives_none(
        self, metadata: dict[str, str] | None
    ) -> None:
        assert decode_metadata(metadata) is None

    def test_chunks_are_the_records_json(self) -> None:
        record = long_record()
        metadata = encode_metadata(record)

        count = int(metadata[RECORD_KEY])
        text = "".join(metadata[f"{RECORD_KEY}.{i}"] for i in range(count))

        assert json.loads(text)["error"] == record.error


class TestTimestamp:
    def test_second_precision_with_z(self) -> None:
        moment = datetime(2026, 4, 14, 13, 0, 59, 999_999, tzinfo=UTC)

        assert timestamp(moment) == "2026-04-14T13:00:59Z"

    def test_offset_time_is_written_in_utc(self) -> None:
        moment = datetime.fromisoformat("2026-04-14T09:00:00-04:00")

        assert timestamp(moment) == "2026-04-14T13:00:00Z"

    def test_none_is_none(self) -> None:
        assert timestamp(None) is None


# --- deployment to automation --------------------------------------------------

NOW = datetime(2026, 4, 14, 12, 0, 0, tzinfo=UTC)  # a Tuesday


class TestAutomationOut:
    def test_every_field_of_an_active_automation(self) -> None:
        automation = automation_out(make_deployment(), {"lastRunAt": "x"}, NOW)

        body = automation.model_dump(by_alias=True, exclude_none=True)
        assert body == {
            "id": "auto_0b6e3f3c8a594d6c9a524f1e2d3c4b5a",
            "name": "Morning digest",
            "description": "Posts the digest every weekday morning.",
            "status": "active",
            "schedule": "30 8 * * 1-5",
            "timezone": "America/New_York",
            "model": "premium",
            "systemPrompt": "Summarise yesterday's merged pull requests.",
            "tools": ["github", "filesystem"],
            "channels": [
                {"type": "slack", "channel": "#docs-team"},
                {"type": "email", "to": ["a@example.com"], "subject": "Digest"},
                {
                    "type": "webhook",
                    "url": "https://hooks.example.com/workjet",
                    "secretSet": True,
                },
                {
                    "type": "webhook",
                    "url": "https://plain.example.com/in",
                    "secretSet": False,
                },
            ],
            # A deployment without a concurrency limit lets runs overlap.
            "overlapPolicy": "allow",
            "timeoutSeconds": 900,
            "lastRunAt": "x",
            # 08:30 in New York on 14 April (EDT, UTC-4)
            "nextRunAt": "2026-04-14T12:30:00Z",
            "createdAt": "2026-04-01T09:15:30Z",
            "updatedAt": "2026-04-02T10:00:05Z",
            "catchUp": "latest",
        }

    def test_next_run_equals_the_schedule_computation(self) -> None:
        deployment = make_deployment(cron="0 2 * * *", zone="Australia/Sydney")

        automation = automation_out(deployment, None, NOW)

        expected = next_fire_time("0 2 * * *", "Australia/Sydney", after=NOW)
        assert automation.next_run_at == timestamp(expected)
        assert automation.next_run_at == "2026-04-14T16:00:00Z"

    def test_next_run_is_null_while_paused(self) -> None:
        automation = automation_out(make_deployment(paused=True), None, NOW)

        assert automation.status == "paused"
        assert automation.next_run_at is None

    def test_next_run_is_null_when_the_schedule_is_inactive(self) -> None:
        deployment = make_deployment(schedule_active=False)

        assert next_run_at(deployment, NOW) is None
        assert automation_out(deployment, None, NOW).status == "active"

    def test_without_stats_last_run_is_null(self) -> None:
        assert automation_out(make_deployment(), None, NOW).last_run_at is None
        assert automation_out(make_deployment(), {}, NOW).last_run_at is None

    def test_webhook_secret_block_name_never_comes_out(self) -> None:
        automation = automation_out(make_deployment(), None, NOW)

        text = automation.model_dump_json(by_alias=True)
        assert SECRET_BLOCK not in text
        assert "secret_block" not in text
        assert "secretBlock" not in text

    def test_raw_secret_in_parameters_never_comes_out(self) -> None:
        parameters = {
            "name": "n",
            "system_prompt": "p",
            "channels": [
                {"type": "webhook", "url": "https://a.example/", "secret": "hunter2"}
            ],
        }

        automation = automation_out(make_deployment(parameters=parameters), None, NOW)

        assert "hunter2" not in automation.model_dump_json()
        assert automation.channels[0].secret_set is False

    def test_missing_parameters_fall_back_to_defaults(self) -> None:
        deployment = make_deployment(parameters={}, schedules=False)

        automation = automation_out(deployment, None, NOW)

        assert automation.name == "workjet-3f1a"
        assert automation.model == "standard"
        assert automation.system_prompt == ""
        assert (automation.tools, automation.channels) == ([], [])
        assert (automation.schedule, automation.timezone) == ("", "UTC")
        assert automation.next_run_at is None

    def test_updated_falls_back_to_created(self) -> None:
        deployment = make_deployment()
        deployment.updated = None

        automation = automation_out(deployment, None, NOW)

        assert automation.updated_at == automation.created_at == "2026-04-01T09:15:30Z"


class TestChannels:
    def test_store_channel_drops_the_webhook_secret(self) -> None:
        channel = WebhookChannelIn.model_validate(
            {"type": "webhook", "url": "https://a.example/in", "secret": "hunter2"}
        )

        stored = store_channel(channel, SECRET_BLOCK)

        assert stored == {
            "type": "webhook",
            "url": "https://a.example/in",
            "secret_block": SECRET_BLOCK,
        }

    def test_store_channel_without_secret_has_no_secret_block(self) -> None:
        channel = WebhookChannelIn.model_validate(
            {"type": "webhook", "url": "https://a.example/in"}
        )

        assert store_channel(channel, None) == {
            "type": "webhook",
            "url": "https://a.example/in",
        }

    def test_store_channel_keeps_slack_and_email_as_given(self) -> None:
        slack = SlackChannelIn.model_validate({"type": "slack", "channel": "#ops"})
        email = EmailChannelIn.model_validate(
            {"type": "email", "to": ["a@example.com", "b@example.org"]}
        )

        assert store_channel(slack, None) == {"type": "slack", "channel": "#ops"}
        assert store_channel(email, None) == {
            "type": "email",
            "to": ["a@example.com", "b@example.org"],
        }

    def test_stored_channel_reads_back_with_secret_set(self) -> None:
        channel = WebhookChannelIn.model_validate(
            {"type": "webhook", "url": "https://a.example/in", "secret": "hunter2"}
        )
        parameters = {"channels": [store_channel(channel, SECRET_BLOCK)]}

        [out] = [channel_out(c) for c in stored_channels(parameters)]

        assert out.model_dump(by_alias=True, exclude_none=True) == {
            "type": "webhook",
            "url": "https://a.example/in",
            "secretSet": True,
        }

    def test_slack_channel_has_no_secret_flag(self) -> None:
        [stored] = stored_channels({"channels": [{"type": "slack", "channel": "#a"}]})

        assert channel_out(stored).secret_set is None

    def test_no_channels_parameter_is_an_empty_list(self) -> None:
        assert stored_channels({}) == []
        assert stored_channels({"channels": None}) == []
