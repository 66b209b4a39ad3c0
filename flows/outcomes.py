"""The `error` of runs that ended before doing their work, and why.

Prefect ends some runs itself (an automation of Prefect's own marks a run whose
heartbeats stopped as crashed); the flow ends others before they do anything (a
scheduled run that overlapped the one before it, a run past its time budget).
The API names each of these in the run's `error`.
"""

from __future__ import annotations

LOST_WORKER_ERROR = "worker lost: the run stopped sending heartbeats"
SKIPPED_ERROR = "skipped: the previous run was still running"
TIMEOUT_ERROR = "timeout"
