"""The one NATS helper: connect, declare streams and buckets, publish with a message id,
dead-letter a message that cannot be handled."""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BadRequestError
from nats.js.kv import KeyValue

from shared import subjects, telemetry
from shared.events import Message, encode
from shared.settings import Settings

log = logging.getLogger("osrs.nats")

DAY = 86_400
DUPLICATE_WINDOW = 120.0
# The scheduler lease: a leader that dies (kill -9, a lost node) is replaced within this; its
# holder renews it every second (services/scheduler/app.py LEASE_RENEW_S).
LEASE_TTL_S = 4.0
# How JetStream refuses a message for a subject holding its limit already (discard new per
# subject): err_code 10077 stands for any store failure, the description says which.
STORE_FAILED = 10077
SUBJECT_FULL = "maximum messages per subject exceeded"


def stream_configs(settings: Settings | None = None) -> list[StreamConfig]:
    retention_days = (settings or Settings()).progress_retention_days
    return [
        # One command per player, waiting or being fetched (a work queue keeps it until it is
        # acked): a second one is refused at publish, so no player is fetched twice at once, a
        # flood of commands stores one per player, and owed slots cannot pile up behind it.
        StreamConfig(
            name=subjects.CMD_STREAM,
            subjects=[f"{subjects.FETCH_PREFIX}.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_msgs_per_subject=1,
            discard=DiscardPolicy.NEW,
            discard_new_per_subject=True,
            duplicate_window=DUPLICATE_WINDOW,
        ),
        StreamConfig(
            name=subjects.EVT_STREAM,
            subjects=["osrs.evt.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW,
        ),
        StreamConfig(
            name=subjects.STATUS_STREAM,
            subjects=[f"{subjects.STATUS_PREFIX}.*"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_msgs_per_subject=1,
            duplicate_window=DUPLICATE_WINDOW,
        ),
        StreamConfig(
            name=subjects.PROGRESS_STREAM,
            subjects=[f"{subjects.PROGRESS_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=retention_days * DAY,
            duplicate_window=DUPLICATE_WINDOW,
        ),
        StreamConfig(
            name=subjects.DEAD_STREAM,
            subjects=[f"{subjects.DEAD_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=90 * DAY,
            discard=DiscardPolicy.OLD,
        ),
    ]


def bucket_configs(settings: Settings) -> list[KeyValueConfig]:
    return [
        # direct: gets answered by the stream itself (a raw message) rather than through the
        # JetStream API (JSON around base64): two gets a fetch, ~4x less server CPU each.
        KeyValueConfig(
            bucket=subjects.FETCH_HASHES_BUCKET, history=1, storage=StorageType.FILE, direct=True
        ),
        KeyValueConfig(bucket=subjects.SCHEDULER_LEASE_BUCKET, history=1, ttl=LEASE_TTL_S),
    ]


def cooldown_bucket(settings: Settings) -> KeyValueConfig:
    """The API's refresh cooldowns: an entry lives as long as the cooldown. Declared by the API
    alone, so another service's settings never change its TTL."""
    return KeyValueConfig(
        bucket=subjects.REFRESH_COOLDOWN_BUCKET, history=1, ttl=float(settings.refresh_cooldown)
    )


async def connect(settings: Settings, name: str) -> Client:
    """A connection that keeps reconnecting for as long as the process lives."""
    return await nats.connect(
        settings.nats_url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
    )


async def connect_once(settings: Settings, name: str) -> Client:
    """A connection for a command-line tool: an error within seconds when NATS does not
    answer (raised, not logged at each attempt)."""

    async def quiet(exc: Exception) -> None:
        pass

    return await nats.connect(
        settings.nats_url,
        name=name,
        connect_timeout=3,
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.5,
        error_cb=quiet,
    )


async def declare(js: JetStreamContext, settings: Settings) -> None:
    """Create or update every stream and KV bucket. Idempotent: each service calls it at start."""
    for config in stream_configs(settings):
        try:
            await js.add_stream(config)
        except BadRequestError:
            # Exists with another configuration (e.g. an older release): bring it up to date.
            await js.update_stream(config)
    for bucket in bucket_configs(settings):
        await declare_bucket(js, bucket)


async def declare_bucket(js: JetStreamContext, bucket: KeyValueConfig) -> KeyValue:
    """Create a KV bucket, or bring an existing one's TTL (and direct gets, when asked for) to
    the ones configured."""
    try:
        return await js.create_key_value(bucket)
    except BadRequestError:
        info = await js.stream_info(f"KV_{bucket.bucket}")
        wanted_ttl = bucket.ttl or 0
        stale = abs((info.config.max_age or 0) - wanted_ttl) > 0.001
        stale |= bool(bucket.direct) and not info.config.allow_direct
        if stale:
            info.config.max_age = wanted_ttl
            if wanted_ttl and (info.config.duplicate_window or 0) > wanted_ttl:
                # A shorter TTL (the lease's went from 10 s to 4 s): JetStream refuses a
                # duplicate window longer than the age limit, as create_key_value sets it.
                info.config.duplicate_window = wanted_ttl
            info.config.allow_direct = info.config.allow_direct or bucket.direct
            await js.update_stream(info.config)
        return await js.key_value(bucket.bucket)


async def publish(
    js: JetStreamContext, subject: str, message: Message, *, msg_id: str, stream: str
) -> bool:
    """Publish with `Nats-Msg-Id`; True when the stream stored it, False when it holds its like
    already: a duplicate id, or (OSRS_CMD) a command for the same player, waiting or being
    fetched, which serves this one too."""
    try:
        ack = await js.publish(
            subject, encode(message), stream=stream, headers={"Nats-Msg-Id": msg_id}
        )
    except APIError as exc:
        if exc.err_code == STORE_FAILED and exc.description == SUBJECT_FULL:
            return False
        raise
    return not ack.duplicate


def _header_bytes(headers: dict[str, str]) -> int:
    """The size of a NATS header block: `NATS/1.0`, a line per header, a blank line."""
    return len("NATS/1.0\r\n\r\n") + sum(len(k) + len(v) + 4 for k, v in headers.items())


async def dead_letter(
    js: JetStreamContext, service: str, msg: Msg, reason: str, *, kind: str
) -> None:
    """Park a message that cannot be handled on `osrs.dead.<service>.<stream>` with the reason
    and its original headers, so nothing is lost and the consumer moves on. `kind` sorts the
    reasons for the metric (`undecodable`, `cannot_apply`, `failed_repeatedly`)."""
    meta = msg.metadata
    headers = dict(msg.headers or {})
    headers.update(
        {
            # One copy per original message, however often a failing batch is retried.
            "Nats-Msg-Id": f"dead:{service}:{meta.stream}:{meta.sequence.stream}",
            "Osrs-Dead-Reason": reason[:1000].replace("\r", " ").replace("\n", " "),
            "Osrs-Original-Subject": msg.subject,
            "Osrs-Original-Stream": meta.stream,
            "Osrs-Original-Sequence": str(meta.sequence.stream),
            "Osrs-Deliveries": str(meta.num_delivered),
        }
    )
    data = msg.data or b""
    # The server counts the headers in its max_payload, and ours make the message longer: a
    # message that just fitted would be refused forever (the consumer stuck on it). Keep what
    # fits, and say how long it was.
    room = js._nc.max_payload - _header_bytes(headers) - 64  # nats-py keeps it on the connection
    if len(data) > room:
        headers["Osrs-Truncated-From"] = str(len(data))
        data = data[: max(room, 0)]
    await js.publish(
        subjects.dead_subject(service, meta.stream),
        data,
        stream=subjects.DEAD_STREAM,
        headers=headers,
    )
    telemetry.DEAD_LETTERS.labels(service, kind).inc()
    log.warning(
        "dead_lettered by=%s kind=%s stream=%s seq=%s subject=%s reason=%r",
        service,
        kind,
        meta.stream,
        meta.sequence.stream,
        msg.subject,
        reason,
    )
