"""Real MCP servers and the stand-in model on loopback, for the tool loop's tests.

The filesystem server is the reference `@modelcontextprotocol/server-filesystem`
that `./workjet.sh` installs into `node_modules`; the git server is
`mcp-server-git` from the dev extra in `.venv`; the fixture server is ours.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import pytest

from blocks.catalog import WorkjetModelCatalog
from blocks.connectors import WorkjetMcpConnector
from flows.agent import Agent, AgentLimits
from flows.connectors import MARKER_VARIABLE
from flows.record import RunRecord
from standin import create_app
from tests.standin.conftest import serving

PROJECT = Path(__file__).resolve().parents[2]
FILESYSTEM_SERVER = PROJECT / "node_modules" / ".bin" / "mcp-server-filesystem"
GIT_SERVER = Path(sys.executable).parent / "mcp-server-git"
FIXTURE_SERVER = Path(__file__).with_name("mcp_fixture_server.py")
MODEL = "claude-sonnet-4-5"


def directive(**values: str | int) -> str:
    """A stand-in directive, plus a nonce so that no two tests share counters."""
    pairs = " ".join(f"{key}={value}" for key, value in values.items())
    return f"[standin: {pairs}] (case {uuid.uuid4().hex[:8]})"


def processes() -> set[int]:
    return {
        int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()
    }


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name, or [] if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def ours(pid: int) -> bool:
    """Started by this test process, or by a connector server (even one that left
    its process group or outlived its parent, since the marker is inherited)."""
    try:
        if MARKER_VARIABLE.encode() in Path(f"/proc/{pid}/environ").read_bytes():
            return True
    except OSError:
        pass

    while pid > 1:
        fields = _stat(pid)
        if not fields:
            return False
        pid = int(fields[1])
        if pid == os.getpid():
            return True
    return False


def leftovers(before: set[int], settle_seconds: float = 5.0) -> set[int]:
    """Processes of ours still running that were not running at `before`.

    A plain count of the machine's processes would also count whatever other
    programs on a shared machine start or end meanwhile; this counts ours only.
    A process that was just sent its signal may take a moment to end, so this
    waits up to `settle_seconds` for the set to empty; a real leak outlives that.
    """
    deadline = time.monotonic() + settle_seconds
    while True:
        left = {pid for pid in processes() - before if alive(pid) and ours(pid)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.fixture(scope="session")
def standin_url() -> Iterator[str]:
    with serving(create_app()) as url:
        yield url


@pytest.fixture
def docs_root(tmp_path: Path) -> Path:
    """Markdown files with words found nowhere else, and a way out of the root."""
    root = tmp_path / "docs"
    root.mkdir()
    (root / "guide.md").write_text(
        "# Install guide\n\nStep 3 still names the quillfeather-nebula flag.\n"
    )
    (root / "api.md").write_text("# API\n\nThe marmalade-sextant endpoint is gone.\n")
    (tmp_path / "outside.md").write_text("classified-porcupine text\n")
    (root / "escape.md").symlink_to(tmp_path / "outside.md")
    return root


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    environment = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Docs Bot",
        "GIT_AUTHOR_EMAIL": "docs@example.com",
        "GIT_COMMITTER_NAME": "Docs Bot",
        "GIT_COMMITTER_EMAIL": "docs@example.com",
    }
    (repo / "README.md").write_text("# Repo\n")
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "README.md"],
        ["git", "commit", "-q", "-m", "Retire the walrus-lantern option"],
    ):
        subprocess.run(command, cwd=repo, env=environment, check=True)
    return repo


@pytest.fixture
def filesystem(docs_root: Path) -> WorkjetMcpConnector:
    if not FILESYSTEM_SERVER.exists():
        pytest.fail(
            f"{FILESYSTEM_SERVER} is missing: ./workjet.sh test installs it with npm"
        )
    return WorkjetMcpConnector(command=str(FILESYSTEM_SERVER), args=[str(docs_root)])


@pytest.fixture
def git(git_repo: Path) -> WorkjetMcpConnector:
    return WorkjetMcpConnector(
        command=str(GIT_SERVER), args=["--repository", str(git_repo)]
    )


@pytest.fixture
def fixture_server(tmp_path: Path) -> Callable[..., WorkjetMcpConnector]:
    """Our own server over stdio; its `hang` tool writes pids to `pids.txt`."""

    def make(call_timeout_seconds: float) -> WorkjetMcpConnector:
        args = [str(FIXTURE_SERVER), "stdio", str(tmp_path / "pids.txt")]
        return WorkjetMcpConnector(
            command=sys.executable, args=args, call_timeout_seconds=call_timeout_seconds
        )

    return make


@pytest.fixture
def make_agent(standin_url: str) -> Callable[..., tuple[Agent, RunRecord]]:
    """An agent on the stand-in through the real SDK, with its own run record."""

    def make(
        max_turns: int = 10,
        budget: float = 60,
        max_tokens: int | None = None,
        max_cost_usd: float | None = None,
    ) -> tuple[Agent, RunRecord]:
        client = anthropic.AsyncAnthropic(
            base_url=standin_url, api_key="not-a-real-key", max_retries=0
        )
        record = RunRecord()
        limits = AgentLimits(
            max_turns=max_turns,
            time_budget_seconds=budget,
            max_tokens=max_tokens,
            max_cost_usd=max_cost_usd,
        )
        agent = Agent(client, WorkjetModelCatalog(), [MODEL], record, limits)
        return agent, record

    return make
