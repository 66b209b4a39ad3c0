"""How an automation is deployed, read from `prefect.yaml`.

`prefect.yaml` is the one place that says which flow an automation runs, in which
work pool and with which pull steps; the facade reads its `definitions.automation`
block and the project's `pull` steps instead of repeating them. Placeholders such as
`{{ $WORKJET_PROJECT_DIR }}` are filled from the environment exactly as
`prefect deploy` fills them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prefect.utilities.templating import apply_values

ORGANIZATION_TAG_PREFIX = "workjet-org:"


@dataclass(frozen=True)
class DeploymentTemplate:
    entrypoint: str
    work_pool_name: str
    pull_steps: list[dict[str, Any]]
    tags: list[str]


def organization_tag(organization: str) -> str:
    return f"{ORGANIZATION_TAG_PREFIX}{organization}"


def load_template(path: Path, project_dir: Path) -> DeploymentTemplate:
    # Prefect reads `{{ $NAME }}` placeholders straight from os.environ.
    os.environ.setdefault("WORKJET_PROJECT_DIR", str(project_dir))
    config: dict[str, Any] = apply_values(  # type: ignore[assignment]
        yaml.safe_load(path.read_text()), dict(os.environ), remove_notset=False
    )

    automation = config["definitions"]["automation"]
    tags = [
        tag
        for tag in automation.get("tags", [])
        if not tag.startswith(ORGANIZATION_TAG_PREFIX)
    ]
    return DeploymentTemplate(
        entrypoint=automation["entrypoint"],
        work_pool_name=automation["work_pool"]["name"],
        pull_steps=list(config.get("pull") or []),
        tags=tags,
    )
