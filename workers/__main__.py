"""`python -m workers` (or `workjet-worker`): run the in-process worker on a pool.

    workjet-worker --pool workjet [--name NAME] [--limit N] [--shutdown-grace S]

The worker's asyncio loop runs in a thread of its own, so that the flow engine,
which installs a SIGTERM handler when it runs in the main thread, leaves signals
to this module: SIGTERM and SIGINT stop taking runs, give those in flight the
grace period to finish, then stop the rest (Prefect records them as crashed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
from typing import Any

logger = logging.getLogger("workers")

DEFAULT_LIMIT = 32
DEFAULT_GRACE_SECONDS = 10.0


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="workjet-worker", description=__doc__)
    parser.add_argument("--pool", default="workjet", help="work pool to poll")
    parser.add_argument("--name", default=None, help="worker name in Prefect")
    parser.add_argument(
        "--limit",
        type=int,
        default=int(os.environ.get("WORKJET_WORKER_CONCURRENCY", DEFAULT_LIMIT)),
        help="flow runs in flight at most (WORKJET_WORKER_CONCURRENCY, default 32)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=float(
            os.environ.get(
                "WORKJET_WORKER_SHUTDOWN_GRACE_SECONDS", DEFAULT_GRACE_SECONDS
            )
        ),
        help="seconds runs in flight get to finish when the worker is stopped",
    )
    options = parser.parse_args(argv)
    if options.limit < 1:
        parser.error("--limit (WORKJET_WORKER_CONCURRENCY) must be 1 or more")
    return options


async def serve(options: argparse.Namespace, stop: threading.Event) -> None:
    # Imported here: Prefect reads its settings when first imported.
    from workers.inprocess import InProcessWorker

    worker = InProcessWorker(
        work_pool_name=options.pool, name=options.name, limit=options.limit
    )
    try:
        async with asyncio.TaskGroup() as group:
            started = group.create_task(worker.start())
            await asyncio.to_thread(stop.wait)

            logger.info(
                "worker stopping name=%s in_flight=%d", worker.name, worker.running
            )
            await worker.stop_runs(options.shutdown_grace)
            started.cancel()
    finally:
        # Releases the waiting thread when the worker failed, so the loop can end.
        stop.set()


def main(argv: list[str] | None = None) -> int:
    # Warnings from libraries (httpx logs every request at INFO), events of ours.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("workers").setLevel(logging.INFO)
    options = _options(argv)
    # A process per run sends its last logs as it exits, just after the run's final
    # state; a long-lived worker sends them in batches, every 2 s by default. A
    # short interval keeps a finished run's logs complete as soon as it has ended.
    os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.25")
    stop = threading.Event()

    def on_signal(*_: Any) -> None:
        stop.set()

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, on_signal)

    failure: list[BaseException] = []

    def loop() -> None:
        try:
            asyncio.run(serve(options, stop))
        except BaseException as error:  # reported by the main thread below
            failure.append(error)
            stop.set()

    thread = threading.Thread(target=loop, name="workjet-worker-loop")
    thread.start()
    # Waiting with a timeout keeps the main thread able to run signal handlers.
    while thread.is_alive():
        thread.join(0.5)
    if failure:
        logger.error("worker failed", exc_info=failure[0])
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
