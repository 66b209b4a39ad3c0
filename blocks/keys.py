"""API keys, stored in Prefect as SHA-256 hashes only.

A key is shown once, when it is made. What Prefect keeps is its hash, the
organization it belongs to and a short prefix for telling keys apart in a list;
nothing stored can be turned back into the key. The block document is named after
the hash, so checking a key is a single read by name.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field

KEY_PREFIX = "wj_live_"
KEY_PATTERN = re.compile(r"^wj_live_[A-Za-z0-9]{32,128}$")
ORGANIZATION_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DEFAULT_ORGANIZATION = "default"


def generate_key() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return KEY_PREFIX + "".join(secrets.choice(alphabet) for _ in range(40))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def document_name(key_hash: str) -> str:
    return f"key-{key_hash}"


class WorkjetApiKey(Block):
    """One API key of the Automations API: its hash and its organization."""

    _block_type_name: ClassVar[str] = "Workjet API Key"
    _block_type_slug: ClassVar[str] = "workjet-api-key"
    _description: ClassVar[str] = (
        "An Automations API key, stored as its SHA-256 hash with the organization it"
        " belongs to. The key itself is never stored."
    )

    key_hash: str = Field(description="SHA-256 of the key, hex.")
    organization: str = Field(description="The organization its requests act in.")
    prefix: str = Field(description="The first characters of the key, for lists.")
    label: str = Field(default="", description="What the key is for.")
    created_at: str = Field(description="When the key was made, RFC 3339 UTC.")
