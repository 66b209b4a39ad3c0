"""A Prefect worker that runs many flow runs at once inside its own process.

Prefect's stock process worker starts a fresh Python interpreter for every flow run,
which costs a couple of seconds of CPU per run before the flow's first line. This
worker polls the same `process` work pool, claims runs exactly as the stock worker
does (Pending, then Submitting), and then runs each one on its own event loop
through Prefect's own flow engine, so Prefect records the same states (Running,
Completed, Failed, Crashed, Cancelled), logs, events and heartbeats as it does for
a run in a process of its own. The flow is loaded once per entrypoint and pull
steps, then reused.

What is different from a process per run: job variables such as `env` and
`working_dir` do not apply (every run shares the worker's environment), and a flow
that ends the interpreter (`os._exit`) or blocks the event loop affects every run
of the worker. A flow that raises, or is cancelled, affects only itself.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import anyio
import anyio.abc
from prefect._internal.observers import FlowRunCancellingObserver
from prefect.client.schemas.objects import FlowRun
from prefect.context import AsyncClientContext
from prefect.exceptions import Abort, Pause
from prefect.flow_engine import AsyncFlowRunEngine
from prefect.flows import Flow, load_flow_from_flow_run
from prefect.settings import get_current_settings
from prefect.utilities.callables import get_call_parameters, parameters_to_args_kwargs
from prefect.workers.process import (
    ProcessJobConfiguration,
    ProcessWorker,
    ProcessWorkerResult,
)

logger = logging.getLogger(__name__)


@dataclass
class Execution:
    """One flow run executing in this process, and how to stop it."""

    flow_run_id: UUID
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    cancel_requested: bool = False
    engine: AsyncFlowRunEngine[Any, Any] | None = None

    @property
    def finished(self) -> bool:
        """Whether the engine recorded a final state for the run."""
        engine = self.engine
        return (
            engine is not None
            and engine.flow_run is not None
            and (engine.state.is_final())
        )

    def cancel(self) -> None:
        """Stop the run because someone asked for it: it ends Cancelled."""
        self.cancel_requested = True
        self.scope.cancel()

    def abandon(self) -> None:
        """Stop the run because the worker is stopping: it ends Crashed."""
        self.scope.cancel()


@dataclass
class WorkerFlowRunEngine(AsyncFlowRunEngine[Any, Any]):
    """Prefect's async flow engine, told apart cancellation from a crash.

    In a process of its own, the engine learns that a SIGTERM means "cancel" from
    the runner's control channel, which is one per process. Here the run's own
    `Execution` says so, and a cancellation it asked for goes through the engine's
    own Cancelling -> Cancelled path instead of being reported as a crash.
    """

    execution: Execution | None = None

    async def handle_crash(self, exc: BaseException) -> None:
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        if cancelled and self.execution is not None and self.execution.cancel_requested:
            await self.handle_cancellation(exc)
            return
        await super().handle_crash(exc)


class InProcessWorker(ProcessWorker, abc.ABC):
    """Runs the flow runs of a `process` work pool concurrently in this process.

    `limit` bounds the runs in flight (Prefect's own worker limit: a run beyond it
    stays Scheduled for any worker of the pool to take).

    NOTE: `abc.ABC` among the bases keeps Prefect's worker registry from filing
    this class under the pool type `process`, which stays ProcessWorker's.
    """

    _description = (
        "Execute many flow runs concurrently inside the worker's own process, on its"
        " event loop."
    )
    _display_name = "In-process"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._executions: dict[UUID, Execution] = {}
        self._flows: dict[str, Flow[..., Any]] = {}
        self._flow_loading = asyncio.Lock()
        self._run_observer: FlowRunCancellingObserver | None = None
        self._runs_client: AsyncClientContext | None = None
        self._stopping = False

    @property
    def running(self) -> int:
        """How many flow runs are executing now."""
        return len(self._executions)

    async def setup(self) -> None:
        await super().setup()

        # One Prefect client (one connection pool) for every run's engine and flow
        # code: `get_client()` returns the client of the current client context.
        # A client per call, as in a process per run, spent about a third of this
        # process's CPU building TLS contexts.
        self._runs_client = await self._exit_stack.enter_async_context(
            AsyncClientContext()
        )

        # One observer for every run in flight, where the stock worker opens one
        # (with its own event subscription) per run.
        self._run_observer = await self._exit_stack.enter_async_context(
            FlowRunCancellingObserver(
                on_cancelling=self._cancel_execution,
                polling_interval=get_current_settings().worker.cancellation_poll_seconds,
            )
        )

    async def get_and_submit_flow_runs(self) -> list[FlowRun]:
        if self._stopping:
            return []
        return await super().get_and_submit_flow_runs()

    async def run(
        self,
        flow_run: FlowRun,
        configuration: ProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> ProcessWorkerResult:
        if task_status is None:
            task_status = anyio.TASK_STATUS_IGNORED
        if self._stopping:
            raise RuntimeError("the worker is stopping")
        flow = await self._load_flow(flow_run)

        execution = Execution(flow_run.id)
        self._executions[flow_run.id] = execution
        if self._run_observer is not None:
            self._run_observer.add_in_flight_flow_run_id(flow_run.id)
        task_status.started(os.getpid())
        # NOTE: set directly, since entering a client context that is already
        # open does not make it current in this task.
        shared = (
            AsyncClientContext.__var__.set(self._runs_client)
            if (self._runs_client is not None)
            else None
        )
        try:
            with execution.scope:
                await self._execute(flow, flow_run.id, execution)
        finally:
            if shared is not None:
                AsyncClientContext.__var__.reset(shared)
            del self._executions[flow_run.id]
            if self._run_observer is not None:
                self._run_observer.remove_in_flight_flow_run_id(flow_run.id)

        # Stopped before its engine could record it (cancelled as it started).
        if execution.cancel_requested and not execution.finished:
            await self._mark_flow_run_as_cancelled(
                flow_run, state_updates={"message": "Flow run was cancelled."}
            )
            return ProcessWorkerResult(status_code=0, identifier=str(os.getpid()))

        # A non-zero code makes the base worker report the run as crashed, which
        # is right only when the engine did not get to record a final state (a
        # stopped run's engine records its crash itself, under a shield).
        return ProcessWorkerResult(
            status_code=0 if execution.finished else 1, identifier=str(os.getpid())
        )

    async def _execute(
        self, flow: Flow[..., Any], flow_run_id: UUID, execution: Execution
    ) -> None:
        """Run the flow through Prefect's engine, as `prefect.engine` would."""
        # Read again: the run's state has moved on since it was claimed.
        flow_run = await self.client.read_flow_run(flow_run_id)
        run_logger = self.get_flow_run_logger(flow_run)
        call_args, call_kwargs = parameters_to_args_kwargs(flow.fn, flow_run.parameters)
        engine = WorkerFlowRunEngine(
            flow=flow,
            flow_run=flow_run,
            parameters=get_call_parameters(flow.fn, call_args, call_kwargs),
            execution=execution,
        )
        execution.engine = engine

        try:
            async with engine.start():
                while engine.is_running():
                    async with engine.run_context():
                        _ = await engine.call_flow_fn()
        except anyio.get_cancelled_exc_class():
            raise
        except (Abort, Pause) as signal:
            run_logger.info("Execution of flow run ended by Prefect: %s", signal)
        except BaseException:
            # The engine has already recorded the crash; whatever the flow raised
            # (even SystemExit) must not reach the worker's other runs.
            run_logger.exception("Execution of flow run ended with an exception")

    async def _load_flow(self, flow_run: FlowRun) -> Flow[..., Any]:
        """The deployment's flow, loaded (pull steps run) once per entrypoint."""
        if flow_run.deployment_id is None:
            raise ValueError("an in-process worker runs deployments' flow runs only")
        deployment = await self.client.read_deployment(flow_run.deployment_id)
        key = json.dumps([deployment.entrypoint, deployment.pull_steps], default=str)

        async with self._flow_loading:
            if key not in self._flows:
                self._flows[key] = await load_flow_from_flow_run(
                    flow_run, use_placeholder_flow=False
                )
                logger.info("flow loaded entrypoint=%s", deployment.entrypoint)
        return self._flows[key]

    def _cancel_execution(self, flow_run_id: UUID) -> None:
        execution = self._executions.get(flow_run_id)
        if execution is not None:
            logger.info("run cancel requested flow_run=%s", flow_run_id)
            execution.cancel()

    async def _cancel_run(self, flow_run_id: UUID) -> None:
        if flow_run_id in self._executions:
            self._cancel_execution(flow_run_id)
            return
        await super()._cancel_run(flow_run_id)

    async def stop_runs(self, grace_seconds: float) -> None:
        """Take no new runs, give those in flight `grace_seconds` to finish, then
        stop the rest, which Prefect then records as crashed."""
        self._stopping = True
        deadline = time.monotonic() + grace_seconds
        while self._executions and time.monotonic() < deadline:
            await anyio.sleep(0.2)

        left = list(self._executions.values())
        if left:
            logger.warning("stopping runs still in flight count=%d", len(left))
        for execution in left:
            execution.abandon()
        # Their crashed states are written under a shield; wait for that.
        deadline = time.monotonic() + 10
        while self._executions and time.monotonic() < deadline:
            await anyio.sleep(0.1)
