"""Tracking a player: the `PlayerTracked` event and the manual fetch that follows it, shared by
the API (POST /v1/players, POST /v1/players/{name}/refresh) and `osrs-diff import`."""

from __future__ import annotations

import math
import time

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared import nats as natsx
from shared import subjects
from shared.events import FetchReason, FetchRequested, PlayerTracked
from shared.modes import GameMode
from shared.players import player_key
from shared.settings import Settings


class Known(msgspec.Struct, frozen=True):
    """What the read models know of a player already."""

    mode: GameMode
    interval_s: int
    tracked: bool  # False: untracked, its history kept


async def track(
    js: JetStreamContext,
    cooldowns: KeyValue,
    *,
    display_name: str,
    mode: GameMode | None,
    interval_s: int,
    known: Known | None,
    by: str,
    cooldown_s: int,
) -> PlayerTracked | None:
    """Publish `PlayerTracked` and a manual fetch (unless one went out inside the cooldown: the
    schedule takes over), or nothing when the player is tracked already as asked: returns the
    event, or None. Without a mode the account type is detected (a player known keeps its
    mode until the fetcher finds another)."""
    key = player_key(display_name)
    detect = mode is None
    mode = mode or (known.mode if known else GameMode.REGULAR)
    if known is not None and known.tracked and (known.mode, known.interval_s) == (mode, interval_s):
        return None
    event = PlayerTracked(
        player_key=key,
        display_name=display_name,
        mode=mode,
        interval_s=interval_s,
        by=by,
        detect_mode=detect,
    )
    await natsx.publish(
        js, subjects.PLAYER_TRACKED, event, msg_id=event.id, stream=subjects.EVT_STREAM
    )
    await request_fetch(
        js, cooldowns, key, display_name, mode, cooldown_s=cooldown_s, detect_mode=detect
    )
    return event


async def request_fetch(
    js: JetStreamContext,
    cooldowns: KeyValue,
    key: str,
    display_name: str,
    mode: GameMode,
    *,
    cooldown_s: int,
    detect_mode: bool = False,
) -> int:
    """Publish a manual fetch unless one was requested inside the cooldown (a KV entry with a
    TTL, shared by every API replica). Returns 0, or the seconds left to wait."""
    try:
        await cooldowns.create(key, str(time.time()).encode())
    except KeyWrongLastSequenceError:
        try:
            entry = await cooldowns.get(key)
            waited = time.time() - float(entry.value.decode())
        except KeyNotFoundError:  # expired in between
            waited = cooldown_s - 1
        return max(1, math.ceil(cooldown_s - waited))
    cmd = FetchRequested(
        player_key=key,
        display_name=display_name,
        mode=mode,
        reason=FetchReason.MANUAL,
        detect_mode=detect_mode,
    )
    try:
        await natsx.publish(
            js,
            subjects.fetch_subject(key),
            cmd,
            msg_id=f"{key}:manual:{cmd.id}",
            stream=subjects.CMD_STREAM,
        )
    except Exception:
        await cooldowns.delete(key)  # no fetch was queued: no cooldown either
        raise
    return 0


async def cooldown_bucket(js: JetStreamContext, settings: Settings) -> KeyValue:
    """The API's cooldown bucket; created with these settings only when no API has made it (the
    API alone sets its TTL)."""
    try:
        return await js.key_value(subjects.REFRESH_COOLDOWN_BUCKET)
    except BucketNotFoundError:
        return await natsx.declare_bucket(js, natsx.cooldown_bucket(settings))
