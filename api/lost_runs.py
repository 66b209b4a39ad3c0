"""Detection of runs whose worker was lost, by a Prefect automation.

Every flow run sends a `prefect.flow-run.heartbeat` event while it runs
(`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`, which the stack sets to 30 s). A run whose
process died with its worker sends neither another heartbeat nor a final state, so
Prefect would show it running for ever and its deployment's concurrency slot would
stay taken. Prefect's own automations (event triggers, a feature unrelated to this
service's automations) watch for exactly that: a proactive trigger that expects a
heartbeat or a final state within a window after the run starts and after each
heartbeat, and marks the run crashed when neither came. The detection lives in the
Prefect server, so it holds whichever worker runs the flow.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from flows.outcomes import LOST_WORKER_ERROR

logger = logging.getLogger(__name__)

DETECTOR_NAME = "workjet-lost-worker"
WINDOW_VARIABLE = "WORKJET_LOST_RUN_SECONDS"
DEFAULT_WINDOW_SECONDS = 90
HEARTBEAT = "prefect.flow-run.heartbeat"
FINAL_STATES = ("Completed", "Failed", "Cancelled", "Crashed")


def window_seconds() -> int:
    return int(os.environ.get(WINDOW_VARIABLE, str(DEFAULT_WINDOW_SECONDS)))


def lost_run_detector(window: int) -> AutomationCore:
    """Prefect's documented crash detection for runs whose heartbeats stop."""
    return AutomationCore(
        name=DETECTOR_NAME,
        description=(
            "Marks a flow run crashed when it sent no heartbeat and reached no final"
            f" state for {window} s: its worker was lost."
        ),
        trigger=EventTrigger(
            # A run's process reports Running and starts heartbeats at once; a
            # process killed in between sent no heartbeat to open a window.
            after={HEARTBEAT, "prefect.flow-run.Running"},
            expect={HEARTBEAT, *(f"prefect.flow-run.{s}" for s in FINAL_STATES)},
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                name="Crashed",
                message=LOST_WORKER_ERROR,
                # A final state that raced the window stays as it is.
                force=False,
            )
        ],
    )


async def ensure_lost_run_detector(client: PrefectClient) -> None:
    """Create the detector, or bring an existing one up to date: once, by name."""
    wanted = lost_run_detector(window_seconds())
    existing = await client.read_automations_by_name(DETECTOR_NAME)

    if not existing:
        await client.create_automation(wanted)
        logger.info("lost-run detector created window=%ds", window_seconds())
        return
    await client.update_automation(existing[0].id, wanted)
    for duplicate in existing[1:]:
        await client.delete_automation(duplicate.id)
