"""The scheduler's leadership: a KV key with a TTL (shared/nats.py LEASE_TTL_S) that one
scheduler holds; only the holder publishes scheduled commands."""

from __future__ import annotations

import logging

from nats.js.errors import (
    BadRequestError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue
from prometheus_client import Gauge

from shared import subjects

log = logging.getLogger("osrs.scheduler")

LEASE_RENEW_S = 1.0  # a quarter of the lease TTL (shared/nats.py LEASE_TTL_S)
WRONG_LAST_SEQUENCE = 10071  # JetStream's err_code for a compare-and-set on a stale revision
LEADER = Gauge("osrs_scheduler_leader", "1 while this scheduler holds the lease, else 0")


class Lease:
    """Leadership through a KV key with a TTL: create takes it, compare-and-set renews it."""

    def __init__(self, kv: KeyValue, holder: str) -> None:
        self.kv = kv
        self.holder = holder.encode()
        self.revision: int | None = None
        self.renewed_at = 0.0

    @property
    def held(self) -> bool:
        return self.revision is not None

    async def keep(self, now: float) -> bool:
        if self.held and now - self.renewed_at < LEASE_RENEW_S:
            return True
        was_held = self.held
        try:
            if self.revision is None:
                self.revision = await self._take()
            else:
                self.revision = await self.kv.update(
                    subjects.LEASE_KEY, self.holder, last=self.revision
                )
            self.renewed_at = now
        except KeyWrongLastSequenceError:
            self.revision = None
        LEADER.set(1 if self.held else 0)
        if self.held != was_held:
            log.info(
                "lease_%s holder=%s", "acquired" if self.held else "lost", self.holder.decode()
            )
        return self.held

    async def _take(self) -> int:
        """Create the lease; or, when it still names this holder (the same replica, restarted
        after a crash before its lease ran out), take it back at once."""
        try:
            return await self.kv.create(subjects.LEASE_KEY, self.holder)
        except KeyWrongLastSequenceError:
            try:
                entry = await self.kv.get(subjects.LEASE_KEY)
            except (KeyNotFoundError, KeyDeletedError):  # gone meanwhile: next tick
                raise KeyWrongLastSequenceError from None
            if entry.value != self.holder:
                raise
            return await self.kv.update(subjects.LEASE_KEY, self.holder, last=entry.revision)

    async def release(self) -> None:
        if self.revision is not None:
            try:
                await self.kv.delete(subjects.LEASE_KEY, last=self.revision)
            except (KeyWrongLastSequenceError, KeyNotFoundError):
                pass
            except BadRequestError as exc:
                # A lease that lapsed (or was taken) since: nats-py's delete reports the stale
                # revision as a bare 400 instead of KeyWrongLastSequenceError.
                if exc.err_code != WRONG_LAST_SEQUENCE:
                    raise
            self.revision = None
            LEADER.set(0)
