"""Runs that Prefect ends for the service (lost worker, overlap), overlap policies
as deployment concurrency, the lost-run detector and the per-key rate limit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from prefect.client.schemas.objects import ConcurrencyLimitStrategy, StateType
from prefect.events.schemas.automations import EventTrigger, Posture

from api.errors import RateLimitError
from api.lost_runs import DETECTOR_NAME, lost_run_detector
from api.mapping import automation_out, concurrency_of, overlap_policy_of, run_out
from api.rate_limit import RateLimiter
from api.schemas import AutomationCreate, AutomationUpdate
from flows.outcomes import LOST_WORKER_ERROR, SKIPPED_ERROR
from tests.unit.test_mapping import (
    STARTED,
    make_artifact,
    make_deployment,
    make_flow_run,
    make_record,
)

BODY = {"name": "Digest", "systemPrompt": "Summarise.", "schedule": "0 8 * * *"}


def deployment_with(policy: str) -> Any:
    limit, options = concurrency_of(policy)  # type: ignore[arg-type]
    deployment = make_deployment()
    if limit is not None:
        deployment.global_concurrency_limit = {  # type: ignore[assignment]
            "id": "5f0c1d2e-0000-4000-8000-000000000000",
            "name": "deployment:x",
            "limit": limit,
            "active": True,
            "active_slots": 0,
            "slot_decay_per_second": 0.0,
        }
    deployment.concurrency_options = options
    deployment.parameters = {**(deployment.parameters or {}), "overlap_policy": policy}
    return deployment


class TestRunsPrefectEnded:
    def test_run_crashed_by_the_lost_run_detector_says_the_worker_was_lost(
        self,
    ) -> None:
        # The record written before delivery has no error; the state says why.
        record = make_record(error=None)
        flow_run = make_flow_run(StateType.CRASHED, message=LOST_WORKER_ERROR)

        run = run_out(flow_run, make_artifact(record))

        assert (run.status, run.error) == ("failure", LOST_WORKER_ERROR)
        assert run.error.startswith("worker lost")

    def test_run_the_flow_skipped_for_overlap_says_so(self) -> None:
        flow_run = make_flow_run(StateType.FAILED, message=SKIPPED_ERROR)

        run = run_out(flow_run, make_artifact(make_record(error=SKIPPED_ERROR)))

        assert (run.status, run.error) == ("failure", SKIPPED_ERROR)


class TestOverlapPolicy:
    @pytest.mark.parametrize(
        ("policy", "limit", "strategy"),
        [
            ("skip", 1, ConcurrencyLimitStrategy.ENQUEUE),
            ("queue", 1, ConcurrencyLimitStrategy.ENQUEUE),
            ("allow", None, None),
        ],
    )
    def test_policy_is_a_deployment_concurrency_limit_and_collision_strategy(
        self, policy: str, limit: int | None, strategy: Any
    ) -> None:
        got_limit, options = concurrency_of(policy)  # type: ignore[arg-type]

        assert got_limit == limit
        assert (options.collision_strategy if options else None) == strategy

    @pytest.mark.parametrize("policy", ["skip", "queue", "allow"])
    def test_policy_reads_back_from_the_deployment(self, policy: str) -> None:
        deployment = deployment_with(policy)

        assert overlap_policy_of(deployment) == policy
        assert automation_out(deployment, None, STARTED).overlap_policy == policy

    def test_a_limit_removed_in_prefect_reads_back_as_allow(self) -> None:
        deployment = deployment_with("skip")
        deployment.global_concurrency_limit = None

        assert overlap_policy_of(deployment) == "allow"

    def test_defaults_are_skip_and_900_seconds(self) -> None:
        body = AutomationCreate.model_validate(BODY)

        assert (body.overlap_policy, body.timeout_seconds) == ("skip", 900)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("overlapPolicy", "sometimes"),
            ("timeoutSeconds", 9),
            ("timeoutSeconds", 86_401),
            ("timeoutSeconds", "soon"),
        ],
    )
    def test_bad_values_are_refused_naming_the_field(
        self, field: str, value: Any
    ) -> None:
        for model, body in (
            (AutomationCreate, {**BODY, field: value}),
            (AutomationUpdate, {field: value}),
        ):
            with pytest.raises(ValueError, match=field):
                model.model_validate(body)

    def test_null_on_update_is_refused(self) -> None:
        with pytest.raises(ValueError, match="must not be null"):
            AutomationUpdate.model_validate({"overlapPolicy": None})

    def test_timeout_is_read_from_the_parameters_with_a_default(self) -> None:
        deployment = make_deployment()
        assert automation_out(deployment, None, STARTED).timeout_seconds == 900

        deployment.parameters["timeout_seconds"] = 60
        assert automation_out(deployment, None, STARTED).timeout_seconds == 60


class TestLostRunDetector:
    def test_expects_a_heartbeat_or_a_final_state_within_the_window(self) -> None:
        detector = lost_run_detector(90)
        trigger = detector.trigger
        assert isinstance(trigger, EventTrigger)

        assert detector.name == DETECTOR_NAME
        assert trigger.posture == Posture.Proactive
        assert trigger.after == {
            "prefect.flow-run.heartbeat",
            "prefect.flow-run.Running",
        }
        assert "prefect.flow-run.heartbeat" in trigger.expect
        assert "prefect.flow-run.Completed" in trigger.expect
        assert trigger.for_each == {"prefect.resource.id"}
        assert trigger.within == timedelta(seconds=90)
        action = detector.actions[0]
        assert action.type == "change-flow-run-state"
        assert (action.state, action.message) == (  # type: ignore[union-attr]
            StateType.CRASHED,
            LOST_WORKER_ERROR,
        )


class TestRateLimiter:
    def test_a_burst_up_to_the_limit_passes_and_the_next_is_429(self) -> None:
        limiter = RateLimiter(per_minute=5)
        for _ in range(5):
            limiter.check("a")

        with pytest.raises(RateLimitError) as refused:
            limiter.check("a")

        assert refused.value.status == 429
        assert refused.value.body()["error"]["type"] == "rate_limit_error"
        assert refused.value.headers() == {"Retry-After": "12"}

    def test_keys_have_buckets_of_their_own(self) -> None:
        limiter = RateLimiter(per_minute=1)
        limiter.check("a")

        limiter.check("b")
        with pytest.raises(RateLimitError):
            limiter.check("a")

    def test_the_bucket_refills_with_time(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        clock = [1000.0]
        monkeypatch.setattr("api.rate_limit.time.monotonic", lambda: clock[0])
        limiter = RateLimiter(per_minute=60)
        for _ in range(60):
            limiter.check("a")
        with pytest.raises(RateLimitError):
            limiter.check("a")

        clock[0] += 1.0

        limiter.check("a")

    def test_zero_means_no_limit(self) -> None:
        limiter = RateLimiter(per_minute=0)
        for _ in range(1000):
            limiter.check("a")
