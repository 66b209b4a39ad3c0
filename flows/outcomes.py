"""The `error` of runs that ended without the flow saying why itself.

Prefect ends such runs: an automation of Prefect's own marks a run whose heartbeats
stopped as crashed, a deployment's concurrency limit cancels a run that would
overlap the one before it. The API names each of these in the run's `error`.
"""

from __future__ import annotations

LOST_WORKER_ERROR = "worker lost: the run stopped sending heartbeats"
SKIPPED_ERROR = "skipped: the previous run was still running"
TIMEOUT_ERROR = "timeout"

# The message Prefect's deployment concurrency rule gives the runs it cancels.
CONCURRENCY_CANCEL_MESSAGE = "Deployment concurrency limit reached."
