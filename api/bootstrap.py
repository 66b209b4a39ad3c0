"""What a fresh Prefect server needs before the API can serve: block types, the
process work pool, the model catalogue, the detector of lost runs, and a first key
for the default organization."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prefect.blocks.system import Secret
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.workers.process import ProcessWorker

from api.keys import create_key, list_keys
from api.lost_runs import ensure_lost_run_detector
from blocks import (
    WorkjetApiKey,
    WorkjetMcpConnector,
    WorkjetModelCatalog,
    WorkjetSlackCredentials,
    WorkjetSmtpServer,
)
from blocks.catalog import CATALOG_DOCUMENT_NAME
from blocks.keys import DEFAULT_ORGANIZATION

logger = logging.getLogger(__name__)


async def register_blocks(client: PrefectClient) -> None:
    for block in (
        WorkjetApiKey,
        WorkjetMcpConnector,
        WorkjetModelCatalog,
        WorkjetSlackCredentials,
        WorkjetSmtpServer,
        Secret,
    ):
        await block.aregister_type_and_schema(client=client)


async def ensure_work_pool(client: PrefectClient, name: str) -> None:
    template = ProcessWorker.get_default_base_job_template()
    try:
        await client.create_work_pool(
            WorkPoolCreate(name=name, type="process", base_job_template=template)
        )
        logger.info("work pool created pool=%s", name)
    except ObjectAlreadyExists:
        pass


async def ensure_catalog(client: PrefectClient) -> None:
    try:
        await WorkjetModelCatalog.aload(CATALOG_DOCUMENT_NAME, client=client)
    except ValueError:
        await WorkjetModelCatalog().asave(CATALOG_DOCUMENT_NAME, client=client)
        logger.info("model catalogue created with list prices")


async def ensure_default_key(client: PrefectClient, key_file: Path) -> str | None:
    """A first key for the default organization, made once; None if one exists."""
    existing = [
        k for k in await list_keys(client) if k.organization == DEFAULT_ORGANIZATION
    ]
    if existing:
        return None

    key = await create_key(client, DEFAULT_ORGANIZATION, label="first key")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    os.chmod(key_file, 0o600)
    return key


async def bootstrap(client: PrefectClient, work_pool: str) -> None:
    await register_blocks(client)
    await ensure_work_pool(client, work_pool)
    await ensure_catalog(client)
    await ensure_lost_run_detector(client)
