"""Start and stop the whole local service: Prefect server, worker, stand-in, facade.

The command `workjet up` and the integration tests use the same code, so what the
tests exercise is what a user runs.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from api.database import ensure_database
from api.settings import PROJECT_DIR

logger = logging.getLogger(__name__)

WORK_POOL = "workjet"
STANDIN_KEY = "standin-no-key"
# `inprocess`: our worker, many runs in one process; `process`: Prefect's stock one.
WORKER_KINDS = ("inprocess", "process")


def worker_kind() -> str:
    kind = os.environ.get("WORKJET_WORKER") or "inprocess"
    if kind not in WORKER_KINDS:
        raise ValueError(f"WORKJET_WORKER must be one of {WORKER_KINDS}, not {kind!r}")
    return kind


@dataclass
class StackConfig:
    home: Path
    api_port: int = 8000
    prefect_port: int = 4200
    standin_port: int = 8765
    host: str = "127.0.0.1"
    database_url: str | None = None
    # Webhook hosts that may be private: a local receiver for development.
    webhook_allowed_hosts: str = "127.0.0.1,localhost,::1"
    project_dir: Path = PROJECT_DIR
    extra_env: dict[str, str] = field(default_factory=dict)
    worker: str = field(default_factory=worker_kind)

    @property
    def prefect_api_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}/api"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}/v1"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}"

    @property
    def uses_standin(self) -> bool:
        return not os.environ.get("ANTHROPIC_API_KEY")


def stack_environment(config: StackConfig) -> dict[str, str]:
    """The environment every process of the stack shares."""
    environment = dict(os.environ)
    prefect_home = config.home / "prefect"
    environment.update(
        {
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_API_URL": config.prefect_api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": config.prefect_api_url,
            "PREFECT_SERVER_API_HOST": config.host,
            "PREFECT_SERVER_API_PORT": str(config.prefect_port),
            # Workers poll often so a scheduled run starts on its minute.
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_WORKER_PREFETCH_SECONDS": "15",
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
            # Heartbeats every 30 s (Prefect's minimum) let the lost-run detector
            # crash a run whose worker died within its window (api/lost_runs.py).
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
            # A run queued behind its automation's previous one looks again soon.
            "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
            # The SQLite server answers 503 to a write that waited on the lock
            # too long; the worker and the runs retry it with backoff, longer
            # than Prefect's default five times (the facade tries twice).
            "PREFECT_CLIENT_MAX_RETRIES": "8",
            "PREFECT_LOGGING_LEVEL": environment.get("PREFECT_LOGGING_LEVEL", "INFO"),
            "WORKJET_PROJECT_DIR": str(config.project_dir),
            "WORKJET_HOME": str(config.home),
            "PYTHONPATH": str(config.project_dir),
        }
    )
    environment["PREFECT_API_DATABASE_CONNECTION_URL"] = config.database_url or (
        f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}"
    )
    # The operator's own list, when set (even empty), wins over the local default.
    environment.setdefault(
        "WORKJET_WEBHOOK_ALLOWED_HOSTS", config.webhook_allowed_hosts
    )
    if config.uses_standin:
        environment["ANTHROPIC_API_KEY"] = STANDIN_KEY
        environment["ANTHROPIC_BASE_URL"] = (
            f"http://{config.host}:{config.standin_port}"
        )
    environment.update(config.extra_env)
    return environment


def wait_until_up(url: str, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.environment = stack_environment(config)
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        (config.home / "logs").mkdir(parents=True, exist_ok=True)

    def _spawn(
        self, name: str, args: list[str], extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.config.home / "logs" / f"{name}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            args,
            cwd=self.config.project_dir,
            env={**self.environment, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append((name, process))
        return process

    def start_standin(self) -> None:
        process = self._spawn(
            "standin",
            [
                sys.executable,
                "-m",
                "standin",
                "--host",
                self.config.host,
                "--port",
                str(self.config.standin_port),
            ],
        )
        url = f"http://{self.config.host}:{self.config.standin_port}/health"
        wait_until_up(url, 30, process)

    def start_prefect(self) -> None:
        if self.config.database_url:
            ensure_database(self.config.database_url)
        process = self._spawn(
            "prefect-server",
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                self.config.host,
                "--port",
                str(self.config.prefect_port),
            ],
        )
        wait_until_up(f"{self.config.prefect_api_url}/health", 90, process)

    def bootstrap(self) -> str | None:
        """Prepare Prefect for the API; the default organization's new key, if made."""
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", "bootstrap"],
            cwd=self.config.project_dir,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"bootstrap failed: {done.stderr[-2000:]}")
        return done.stdout.strip() or None

    def create_key(self, organization: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", "keys", "create", "--org", organization],
            cwd=self.config.project_dir,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    def start_worker(
        self,
        name: str = "workjet-worker",
        kind: str | None = None,
        pool: str = WORK_POOL,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a worker on the pool: `kind` (default the config's) says which."""
        kind = kind or self.config.worker
        if kind == "process":
            command = ["-m", "prefect", "worker", "start", "--type", "process"]
        elif kind == "inprocess":
            command = ["-m", "workers"]
        else:
            raise ValueError(f"unknown worker kind {kind!r}; one of {WORKER_KINDS}")
        return self._spawn(
            name,
            [sys.executable, *command, "--pool", pool, "--name", name],
            extra_env=extra_env,
        )

    def start_api(self) -> None:
        process = self._spawn(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.app:app",
                "--host",
                self.config.host,
                "--port",
                str(self.config.api_port),
                "--log-level",
                "info",
                "--no-access-log",
            ],
            # A request waits on at most two tries of each Prefect call (10 s each)
            # before it answers 503, instead of the client's default five.
            extra_env={"PREFECT_CLIENT_MAX_RETRIES": "1"},
        )
        wait_until_up(f"{self.config.api_url}/health", 60, process)

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                logger.warning("process did not stop, killing name=%s", name)
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()
