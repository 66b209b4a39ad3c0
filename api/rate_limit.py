"""Requests per API key: a token bucket per key, in this facade process.

Each key may send `per_minute` requests in a burst and then `per_minute / 60` a
second. The buckets live in memory: a restarted facade starts them full, and each
facade instance counts on its own, so behind N instances a key gets N times the
rate. That bounds a runaway client, which is the point; it is no billing meter.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from api.errors import RateLimitError

MAX_TRACKED_KEYS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.per_second = per_minute / 60.0
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key_hash: str) -> None:
        """Take one request from the key's bucket, or refuse with the wait."""
        if self.capacity <= 0:
            return

        now = time.monotonic()
        bucket = self._buckets.get(key_hash)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_KEYS:
                self._buckets.clear()
            bucket = self._buckets[key_hash] = _Bucket(self.capacity, now)
        bucket.tokens = min(
            self.capacity, bucket.tokens + (now - bucket.updated) * self.per_second
        )
        bucket.updated = now

        if bucket.tokens < 1:
            wait = math.ceil((1 - bucket.tokens) / self.per_second)
            raise RateLimitError(
                f"Too many requests for this API key; retry in {wait} s.",
                retry_after=wait,
            )
        bucket.tokens -= 1
