"""`osrs-diff status`: how far behind each durable consumer is, what waits in the outbox, the
last dead letters, the projector's checkpoints against the streams, and the fetcher's circuit
breaker (from its metrics endpoint). What cannot be reached is reported as unknown."""

from __future__ import annotations

from datetime import datetime

import httpx
import msgspec
import nats.errors
import psycopg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client.parser import text_string_to_metric_families

from services.console import table
from services.projector.feeds import FEEDS
from services.projector.queries import CHECKPOINTS
from services.projector.relay import BACKLOG
from shared import nats as natsx
from shared import subjects
from shared.settings import DEFAULT_METRICS_PORTS, Settings

STREAMS = (
    subjects.CMD_STREAM,
    subjects.EVT_STREAM,
    subjects.STATUS_STREAM,
    subjects.PROGRESS_STREAM,
    subjects.DEAD_STREAM,
)
DEAD_SHOWN = 5
BREAKER_NAMES = {0: "closed", 1: "half_open", 2: "open"}  # services/fetcher/resilience.py
DEFAULT_FETCHER_METRICS = f"http://127.0.0.1:{DEFAULT_METRICS_PORTS['fetcher']}/metrics"


class Consumer(msgspec.Struct):
    stream: str
    consumer: str
    pending: int  # not delivered yet: the lag
    ack_pending: int  # delivered, not acknowledged yet
    redelivered: int


class DeadLetter(msgspec.Struct):
    seq: int
    at: datetime | None
    service: str  # the one that gave up on it
    subject: str  # where it was first published
    reason: str


class Checkpoint(msgspec.Struct):
    stream: str
    applied: int  # the last sequence the projector applied
    last_seq: int  # the stream's last sequence
    behind: int


class Breaker(msgspec.Struct):
    host: str
    state: str


class Status(msgspec.Struct):
    consumers: list[Consumer] | None = None  # None: unknown (see `problems`)
    outbox_backlog: int | None = None
    dead_letters: list[DeadLetter] | None = None
    dead_letters_total: int | None = None
    checkpoints: list[Checkpoint] | None = None
    breakers: list[Breaker] | None = None
    breaker_source: str = ""
    problems: list[str] = msgspec.field(default_factory=list)


async def collect(settings: Settings, fetcher_metrics: list[str]) -> Status:
    status = Status()
    last_seqs: dict[str, int] = {}
    try:
        nc = await natsx.connect_once(settings, "osrs-diff-status")
    except (OSError, nats.errors.Error, TimeoutError) as exc:
        status.problems.append(f"NATS at {settings.nats_url}: {exc or type(exc).__name__}")
    else:
        try:
            js = nc.jetstream()
            status.consumers, last_seqs = await _consumers(js)
            status.dead_letters, status.dead_letters_total = await _dead_letters(js)
        except (nats.errors.Error, TimeoutError) as exc:
            status.problems.append(f"NATS at {settings.nats_url}: {exc or type(exc).__name__}")
        finally:
            await nc.close()
    try:
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, connect_timeout=5
        ) as conn:
            (status.outbox_backlog,) = await (await conn.execute(BACKLOG)).fetchone()
            applied = dict(await (await conn.execute(CHECKPOINTS)).fetchall())
    except psycopg.Error as exc:
        status.problems.append(f"Postgres: {' '.join(str(exc).split()) or type(exc).__name__}")
    else:
        if last_seqs:
            status.checkpoints = [
                Checkpoint(stream, seq, last_seqs[stream], max(0, last_seqs[stream] - seq))
                for stream, seq in ((s, applied.get(s, 0)) for s, _, _ in FEEDS)
                if stream in last_seqs
            ]
    status.breakers, status.breaker_source = await _breakers(fetcher_metrics)
    return status


async def _consumers(js: JetStreamContext) -> tuple[list[Consumer], dict[str, int]]:
    consumers, last_seqs = [], {}
    for stream in STREAMS:
        try:
            last_seqs[stream] = (await js.stream_info(stream)).state.last_seq
        except NotFoundError:
            continue  # never declared: no service has run against this NATS
        for info in await js.consumers_info(stream):
            if info.config.durable_name:  # ephemeral ones (live subscriptions) come and go
                consumers.append(
                    Consumer(
                        stream,
                        info.name,
                        info.num_pending or 0,
                        info.num_ack_pending or 0,
                        info.num_redelivered or 0,
                    )
                )
    return sorted(consumers, key=lambda c: (c.stream, c.consumer)), last_seqs


async def _dead_letters(js: JetStreamContext) -> tuple[list[DeadLetter], int]:
    """The last few messages of OSRS_DEAD, newest first, and how many it holds."""
    try:
        state = (await js.stream_info(subjects.DEAD_STREAM)).state
    except NotFoundError:
        return [], 0
    found: list[DeadLetter] = []
    seq = state.last_seq
    while len(found) < DEAD_SHOWN and seq >= max(state.first_seq, 1):
        try:
            msg = await js.get_msg(subjects.DEAD_STREAM, seq)
        except NotFoundError:  # deleted: look further back
            seq -= 1
            continue
        headers = msg.headers or {}
        found.append(
            DeadLetter(
                seq=seq,
                at=msg.time,
                service=msg.subject.split(".")[2] if msg.subject.count(".") >= 2 else "?",
                subject=headers.get("Osrs-Original-Subject", "?"),
                reason=headers.get("Osrs-Dead-Reason", "?"),
            )
        )
        seq -= 1
    return found, state.messages


async def _breakers(urls: list[str]) -> tuple[list[Breaker] | None, str]:
    """The breaker gauge of each fetcher metrics endpoint that answers; None when none does."""
    breakers: list[Breaker] = []
    answered, refused = [], []
    async with httpx.AsyncClient(timeout=2) as http:
        for url in urls:
            try:
                response = await http.get(url)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                refused.append(f"{url} ({type(exc).__name__})")
                continue
            answered.append(url)
            for family in text_string_to_metric_families(response.text):
                if family.name == "osrs_circuit_breaker_state":
                    breakers += [
                        Breaker(s.labels.get("host", "?"), BREAKER_NAMES.get(int(s.value), "?"))
                        for s in family.samples
                    ]
    if not answered:
        return None, "no fetcher metrics at " + ", ".join(refused)
    return breakers, ", ".join(answered + [f"not {r}" for r in refused])


def render(status: Status) -> str:
    """The status as text, one section after another."""
    out: list[str] = []
    out.append("CONSUMERS (pending = not delivered yet; ack pending = delivered, not acked)")
    if status.consumers is None:
        out.append("  unknown")
    elif not status.consumers:
        out.append("  none yet")
    else:
        rows = [
            (c.stream, c.consumer, f"{c.pending:,}", f"{c.ack_pending:,}", f"{c.redelivered:,}")
            for c in status.consumers
        ]
        out.append(
            _indent(table(("STREAM", "CONSUMER", "PENDING", "ACK PENDING", "REDELIVERED"), rows))
        )
    out.append("")
    out.append("PROJECTOR CHECKPOINTS")
    if status.checkpoints is None:
        out.append("  unknown")
    else:
        rows = [
            (c.stream, f"{c.applied:,}", f"{c.last_seq:,}", f"{c.behind:,}")
            for c in status.checkpoints
        ]
        out.append(_indent(table(("STREAM", "APPLIED", "STREAM LAST", "BEHIND"), rows)))
    backlog = "unknown" if status.outbox_backlog is None else f"{status.outbox_backlog:,} unsent"
    out += ["", f"OUTBOX  {backlog}", ""]
    if status.dead_letters is None:
        out.append("DEAD LETTERS  unknown")
    else:
        out.append(f"DEAD LETTERS  {status.dead_letters_total:,} in {subjects.DEAD_STREAM}")
        for dead in status.dead_letters:
            at = dead.at.strftime("%Y-%m-%d %H:%M:%S") if dead.at else "?"
            out.append(f"  #{dead.seq}  {at}  {dead.service}  {dead.subject}  {dead.reason}")
    out.append("")
    if status.breakers is None:
        out.append(f"CIRCUIT BREAKER  unknown: {status.breaker_source}")
    elif not status.breakers:
        out.append(f"CIRCUIT BREAKER  not reported yet ({status.breaker_source})")
    else:
        states = ", ".join(f"{b.state} ({b.host})" for b in status.breakers)
        out.append(f"CIRCUIT BREAKER  {states}  from {status.breaker_source}")
    if status.problems:
        out += ["", *(f"unreachable: {problem}" for problem in status.problems)]
    return "\n".join(out)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
