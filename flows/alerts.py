"""What a finished run changes beyond its record: the streak of failed runs, an
alert or a recovery message to the channels, and the pause after too many failures.

Only the run's final status counts: retries inside the run (the SDK's, the
channels') are over by the time this runs. A cancelled run counts neither way.
The streak lives in the automation's stats variable, beside its running totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.utilities.urls import url_for
from prefect.variables import Variable

from flows.channels import StoredChannel
from flows.delivery import Notice, deliver_all, run_logger
from flows.guardrails import Guardrails
from flows.ids import stats_variable_name
from flows.variables import save_variable

SKIPPED_PREFIX = "skipped: "
FAILURES_KEY = "consecutiveFailures"
ALERTED_KEY = "alerted"
PAUSED_REASON_KEY = "pausedReason"


@dataclass(frozen=True)
class AfterRun:
    """What to do once a run has finished."""

    streak: int
    alert: Literal["failure", "recovery"] | None
    alerted: bool
    pause: bool


def plan_after_run(
    failed: bool, streak: int, alerted: bool, guardrails: Guardrails | None
) -> AfterRun:
    """Decide from the run's outcome and the streak before it.

    A failure alert goes out for every failed run once the streak reaches
    `afterConsecutiveFailures`; a recovery message once, for the first success
    after an alert.
    """
    notify = guardrails.notify if guardrails else None
    if not failed:
        recovery = alerted and notify is not None and notify.on_recovery
        return AfterRun(
            streak=0, alert="recovery" if recovery else None, alerted=False, pause=False
        )

    streak += 1
    alert = (
        notify is not None
        and notify.on_failure == "final"
        and streak >= notify.after_consecutive_failures
    )
    limit = guardrails.pause_after_consecutive_failures if guardrails else None
    return AfterRun(
        streak=streak,
        alert="failure" if alert else None,
        alerted=alerted or alert,
        pause=limit is not None and streak >= limit,
    )


async def settle_run(
    guardrails: Guardrails | None,
    channels: list[StoredChannel],
    body: dict[str, Any],
    deployment_id: UUID,
    flow_run_id: UUID,
) -> None:
    """Count the run in the streak, pause and alert as the guardrails say.

    `body` is the run as its webhook body carries it, with its final status.
    """
    name = stats_variable_name(deployment_id)
    current: Any = await Variable.aget(name, default=None)  # type: ignore[func-returns-value]
    stats: dict[str, Any] = dict(current) if isinstance(current, dict) else {}
    run = body["run"]
    error = run.get("error") if run["status"] == "failure" else None
    if error is not None and error.startswith(SKIPPED_PREFIX):
        return  # a run skipped for its budget neither failed nor succeeded
    before = int(stats.get(FAILURES_KEY, 0))

    plan = plan_after_run(
        error is not None, before, bool(stats.get(ALERTED_KEY)), guardrails
    )
    paused_reason = None
    if plan.pause and await _pause(deployment_id):
        paused_reason = (
            f"paused after {plan.streak} consecutive failed runs; last error: {error}"
        )
        stats[PAUSED_REASON_KEY] = paused_reason
        run_logger().warning(
            "automation paused automation=%s failures=%d",
            body["automationId"],
            plan.streak,
        )
    stats[FAILURES_KEY] = plan.streak
    stats[ALERTED_KEY] = plan.alerted
    await save_variable(name, stats)

    if plan.alert is not None and channels:
        link = url_for("flow-run", obj_id=flow_run_id)
        notice = _notice(plan, before, body, link, paused_reason)
        run_logger().info(
            "alert sent automation=%s event=%s", body["automationId"], notice.event
        )
        await deliver_all(channels, body, notice)


def _notice(
    plan: AfterRun,
    before: int,
    body: dict[str, Any],
    link: str | None,
    paused_reason: str | None,
) -> Notice:
    automation = body["automationName"]
    run = body["run"]
    where = f"Run {run['id']}" + (f": {link}" if link else "")
    if plan.alert == "recovery":
        after = f" after {before} failed run{'s' if before != 1 else ''}"
        return Notice(
            event="recovery",
            subject=f"{automation}: runs succeed again",
            text=f"**{automation}** succeeds again{after if before else ''}."
            f"\n\n{where}",
        )

    in_a_row = f" ({plan.streak} in a row)" if plan.streak > 1 else ""
    lines = [
        f"**{automation}**: a {run['trigger']} run failed{in_a_row}.",
        f"Error: {run['error']}",
        where,
    ]
    if paused_reason:
        lines.append(f"The automation is now paused: {paused_reason}.")
    return Notice(
        event="failure",
        subject=f"{automation}: run failed",
        text="\n\n".join(lines),
    )


async def _pause(deployment_id: UUID) -> bool:
    """Pause the deployment unless it already is (a manual pause keeps its reason)."""
    async with get_client() as client:
        deployment = await client.read_deployment(deployment_id)
        if deployment.paused:
            return False
        await client.pause_deployment(deployment_id)
    return True
