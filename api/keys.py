"""API keys in Prefect: make, list, revoke, and check the key of a request."""

from __future__ import annotations

import hmac
import logging
import time
from datetime import UTC, datetime

from prefect.client.orchestration import PrefectClient
from prefect.exceptions import ObjectNotFound

from api.prefect_calls import prefect_boundary
from blocks.keys import (
    KEY_PATTERN,
    ORGANIZATION_PATTERN,
    WorkjetApiKey,
    document_name,
    generate_key,
    hash_key,
)

logger = logging.getLogger(__name__)
SLUG = WorkjetApiKey.get_block_type_slug()


async def create_key(client: PrefectClient, organization: str, label: str = "") -> str:
    """Make a key for the organization and return it; only its hash is stored."""
    if not ORGANIZATION_PATTERN.match(organization):
        raise ValueError(
            "organization: use lower-case letters, digits and dashes (at most 63)"
        )

    key = generate_key()
    key_hash = hash_key(key)
    block = WorkjetApiKey(
        key_hash=key_hash,
        organization=organization,
        prefix=key[:12],
        label=label,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    await block.asave(document_name(key_hash), client=client)
    logger.info("api key created organization=%s prefix=%s", organization, key[:12])
    return key


async def list_keys(client: PrefectClient) -> list[WorkjetApiKey]:
    documents = await client.read_block_documents_by_type(
        block_type_slug=SLUG, include_secrets=False
    )
    return [WorkjetApiKey.model_validate(document.data) for document in documents]


class AmbiguousKeyError(ValueError):
    """The text does not name exactly one key."""


async def revoke_key(client: PrefectClient, identifier: str) -> str:
    """Delete the one key whose shown prefix, whole key or hash (16+ hex) is given.

    Exactly one key must match: a short text such as `wj_live_` would otherwise
    revoke every key of every organization.
    """
    documents = await client.read_block_documents_by_type(
        block_type_slug=SLUG, include_secrets=False
    )
    given_hash = hash_key(identifier) if KEY_PATTERN.match(identifier) else None
    matches = [
        document
        for document in documents
        if document.data.get("prefix") == identifier
        or document.data.get("key_hash") == given_hash
        or (
            len(identifier) >= 16
            and str(document.data.get("key_hash", "")).startswith(identifier)
        )
    ]
    if len(matches) != 1:
        raise AmbiguousKeyError(
            f"{len(matches)} keys match; give the 12-character prefix that"
            " `keys list` shows, the whole key, or 16+ characters of its hash"
        )

    await client.delete_block_document(matches[0].id)
    organization = str(matches[0].data.get("organization"))
    logger.info("api key revoked organization=%s", organization)
    return organization


class KeyVerifier:
    """Finds the organization of a key, asking Prefect on every request by default.

    The key is never compared as text: its SHA-256 hash names the block document
    to read, and the stored hash is checked against it in constant time. With
    `cache_seconds` above 0 answers are remembered that long, and a revoked key
    works until its entry expires; at 0 revocation holds from the next request.
    """

    def __init__(self, client: PrefectClient, cache_seconds: float) -> None:
        self.client = client
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, str | None]] = {}

    @prefect_boundary
    async def organization_of(self, key: str) -> str | None:
        if not KEY_PATTERN.match(key):
            return None

        key_hash = hash_key(key)
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]

        organization = await self._lookup(key_hash)
        if self.cache_seconds <= 0:
            return organization
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key_hash] = (time.monotonic() + self.cache_seconds, organization)
        return organization

    async def _lookup(self, key_hash: str) -> str | None:
        try:
            document = await self.client.read_block_document_by_name(
                document_name(key_hash), SLUG, include_secrets=False
            )
        except ObjectNotFound:
            return None
        stored = str(document.data.get("key_hash") or "")
        if not hmac.compare_digest(stored.encode(), key_hash.encode()):
            return None
        return str(document.data.get("organization") or "") or None
