"""Prefect block types of the service, for `prefect block register -m blocks`."""

from blocks.catalog import WorkjetModelCatalog
from blocks.channels import WorkjetSlackCredentials, WorkjetSmtpServer
from blocks.connectors import WorkjetMcpConnector
from blocks.keys import WorkjetApiKey

__all__ = [
    "WorkjetApiKey",
    "WorkjetMcpConnector",
    "WorkjetModelCatalog",
    "WorkjetSlackCredentials",
    "WorkjetSmtpServer",
]
