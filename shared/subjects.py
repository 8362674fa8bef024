"""Every stream, subject, consumer and bucket name, in one place."""

from __future__ import annotations

# Streams
CMD_STREAM = "OSRS_CMD"
EVT_STREAM = "OSRS_EVT"
STATUS_STREAM = "OSRS_STATUS"
PROGRESS_STREAM = "OSRS_PROGRESS"
DEAD_STREAM = "OSRS_DEAD"

# Subjects
FETCH_PREFIX = "osrs.cmd.fetch"
PLAYER_EVENTS = "osrs.evt.player.>"
PLAYER_TRACKED = "osrs.evt.player.tracked"
PLAYER_UNTRACKED = "osrs.evt.player.untracked"
PLAYER_UPDATED = "osrs.evt.player.updated"
OBSERVED_PREFIX = "osrs.evt.hiscore.observed"
STATUS_PREFIX = "osrs.status.fetch"
PROGRESS_PREFIX = "osrs.progress"
DEAD_PREFIX = "osrs.dead"

# Durable consumers
FETCHER_CONSUMER = "fetcher"
PROJECTOR_EVT_CONSUMER = "projector_evt"
PROJECTOR_STATUS_CONSUMER = "projector_status"

# KV buckets
FETCH_HASHES_BUCKET = "fetch_hashes"
SCHEDULER_LEASE_BUCKET = "scheduler_lease"
REFRESH_COOLDOWN_BUCKET = "refresh_cooldown"
LEASE_KEY = "leader"


def fetch_subject(player_key: str) -> str:
    return f"{FETCH_PREFIX}.{player_key}"


def observed_subject(player_key: str) -> str:
    return f"{OBSERVED_PREFIX}.{player_key}"


def status_subject(player_key: str) -> str:
    return f"{STATUS_PREFIX}.{player_key}"


def dead_subject(service: str, stream: str) -> str:
    return f"{DEAD_PREFIX}.{service}.{stream}"


def hash_key(mode: str, player_key: str) -> str:
    """Key of the fetcher's last-seen hash: `<mode>.<player_key>`."""
    return f"{mode}.{player_key}"


def progress_subject(player_key: str, kind: str) -> str:
    return f"{PROGRESS_PREFIX}.{player_key}.{kind}"
