"""Configuration of the facade, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


@dataclass(frozen=True)
class Settings:
    project_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("WORKJET_PROJECT_DIR", str(PROJECT_DIR))
        )
    )
    max_body_bytes: int = field(
        default_factory=lambda: _int("WORKJET_MAX_BODY_BYTES", 256 * 1024)
    )
    key_cache_seconds: int = field(
        default_factory=lambda: _int("WORKJET_KEY_CACHE_SECONDS", 0)
    )
    rate_limit_per_minute: int = field(
        default_factory=lambda: _int("WORKJET_RATE_LIMIT_PER_MINUTE", 1200)
    )
    prefect_timeout_seconds: float = field(
        default_factory=lambda: float(_int("WORKJET_PREFECT_TIMEOUT_SECONDS", 10))
    )
    automations_page_max: int = 200

    @property
    def prefect_yaml(self) -> Path:
        return self.project_dir / "prefect.yaml"
