"""The measurements of bench/run.py's `log` part, each against servers the runner started: the
projector's rate next to the database's raw COPY rate, a rebuild from the log, the bytes an
observation costs, and the share of fetches that store an observation when 70 % of the players
are idle."""

from __future__ import annotations

import asyncio
import gc
import time
from datetime import UTC, datetime

import msgspec
import psycopg
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.fetcher.hiscores import payload_hash
from services.projector.feeds import FeedLoops, reset_consumers
from services.projector.projection import Projector
from services.projector.rebuild import rebuild
from shared import db, subjects
from shared.events import ActivityEntry, HiscoreObserved, SkillEntry, decode, encode
from shared.modes import GameMode
from shared.settings import Settings
from sim.population import Population

PLAYERS = 2000
STEP_S = 86_400  # a day between two looks: an active player always changed, an idle one never
PUBLISH_IN_FLIGHT = 512


def observations(count: int) -> list[HiscoreObserved]:
    """`count` HiscoreObserved as the fetcher would publish them for the simulator's players:
    one look a day at each, kept only when the payload hash changed."""
    pop = Population(PLAYERS, seed=1, tick_s=3600)
    last_hash: dict[int, str] = {}
    found: list[HiscoreObserved] = []
    t = pop.epoch + 10 * 86_400
    while len(found) < count:
        for i in range(PLAYERS):
            player = pop.player(i)
            at = t + (i * 7919 % STEP_S)  # each player at its own offset within the day
            state = pop.truth(player, at)
            if state is None:
                continue
            digest = payload_hash(state.skills, state.activities)
            if last_hash.get(i) == digest:
                continue
            last_hash[i] = digest
            found.append(
                HiscoreObserved(
                    player_key=player.key,
                    display_name=state.name,
                    mode=GameMode.REGULAR,
                    observed_at=datetime.fromtimestamp(at, UTC),
                    hash=digest,
                    skills=tuple(SkillEntry(s.name, s.rank, s.level, s.xp) for s in state.skills),
                    activities=tuple(
                        ActivityEntry(a.name, a.rank, a.score) for a in state.activities
                    ),
                )
            )
            if len(found) == count:
                break
        t += STEP_S
    return found


Encoded = list[tuple[str, bytes]]  # (subject, payload): bytes are no work for the GC


def encoded(events: list[HiscoreObserved]) -> Encoded:
    return [(subjects.observed_subject(e.player_key), encode(e)) for e in events]


async def preload(js: JetStreamContext, events: Encoded) -> int:
    """Publish the events to OSRS_EVT; returns the last stream sequence."""
    last = 0
    for start in range(0, len(events), PUBLISH_IN_FLIGHT):
        acks = await asyncio.gather(
            *(
                js.publish(subject, data, stream=subjects.EVT_STREAM)
                for subject, data in events[start : start + PUBLISH_IN_FLIGHT]
            )
        )
        last = max(last, *(ack.seq for ack in acks))
    return last


async def copies(js: JetStreamContext, events: Encoded, count: int) -> int:
    """Publish `count` more copies of the events, each of other players (`sim_12` becomes
    `sim_12_c1`, ...) with the same histories: a log of (count + 1) times the size for the
    rebuild; returns the last stream sequence."""
    last = 0
    for copy in range(1, count + 1):
        for start in range(0, len(events), PUBLISH_IN_FLIGHT):
            batch = []
            for _, data in events[start : start + PUBLISH_IN_FLIGHT]:
                event = decode(data, HiscoreObserved)
                key = f"{event.player_key}_c{copy}"
                batch.append(
                    (
                        subjects.observed_subject(key),
                        encode(
                            msgspec.structs.replace(
                                event, player_key=key, display_name=f"{event.display_name} c{copy}"
                            )
                        ),
                    )
                )
            last = await preload(js, batch)
    return last


async def rebuild_rate(nats_url: str, database_url: str) -> dict:
    """`osrs-diff rebuild`'s own code over the whole of OSRS_EVT, swap included."""
    settings = Settings(nats_url=nats_url, database_url=database_url)
    started = time.perf_counter()
    report = await rebuild(settings)
    elapsed = time.perf_counter() - started
    return {
        "rebuild_events": report.events,
        "rebuild_seconds": elapsed,
        "rebuild_events_per_s": report.events / elapsed,
    }


async def projector_rate(js: JetStreamContext, database_url: str, last_seq: int) -> dict:
    """Run the projector's own feed loops over the preloaded stream until its checkpoint in
    Postgres reaches `last_seq`. The outbox relay does not run: its rows are counted, not sent."""
    dead: list[str] = []

    async def dead_letter(msg: Msg, reason: str) -> None:
        dead.append(reason)

    pool = db.pool(database_url, min_size=1, max_size=4, name="bench-projector")
    await pool.open(wait=True, timeout=30)
    projector = Projector(pool, dead_letter)
    await projector.seed_metrics()
    await reset_consumers(js, await projector.checkpoints())
    feeds = FeedLoops(js, projector)
    gc.collect()
    gc.freeze()  # as the projector service does once started (services/projector/app.py)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as watch:
        started, cpu = time.perf_counter(), time.process_time()
        feeds.start()
        while True:
            row = await (
                await watch.execute(
                    "SELECT last_seq FROM projector_checkpoints WHERE stream = %s",
                    (subjects.EVT_STREAM,),
                )
            ).fetchone()
            if row and row[0] >= last_seq:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        await feeds.stop()
        outbox = (await (await watch.execute("SELECT count(*) FROM outbox")).fetchone())[0]
    await pool.close()
    return {
        "projector_events_per_s": last_seq / elapsed,
        "projector_seconds": elapsed,
        "projector_outbox_rows": outbox,
        "projector_dead_letters": len(dead),
        # this process's CPU over the wall time: near 1 means Python is the limit, not Postgres
        "projector_cpu_share": cpu / elapsed,
    }


def raw_copy_rate(database_url: str) -> dict:
    """The database's raw speed on the same rows: what the projector stored in `observations`,
    COPYed into a table like it (same columns, primary key and defaults; no foreign key)."""
    columns = "player_id, observed_at, mode, total_level, data"
    with psycopg.connect(database_url, autocommit=True) as conn:
        buffer = bytearray()
        with conn.cursor().copy(f"COPY (SELECT {columns} FROM observations) TO STDOUT") as copy:
            for chunk in copy:
                buffer += chunk
        rows = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
        conn.execute("DROP TABLE IF EXISTS bench_raw_observations")
        conn.execute("CREATE TABLE bench_raw_observations (LIKE observations INCLUDING ALL)")
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy(f"COPY bench_raw_observations ({columns}) FROM STDIN") as copy,
        ):
            copy.write(bytes(buffer))
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_raw_observations")
    return {"raw_copy_rows_per_s": rows / elapsed, "raw_copy_rows": rows}


def storage(database_url: str) -> dict:
    """All-in bytes (heap, TOAST, indexes) per row of the real `observations` table."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE observations")
        size, rows = conn.execute(
            "SELECT pg_total_relation_size('observations'), count(*) FROM observations"
        ).fetchone()
    return {"bytes_per_observation": size / rows, "observations_stored": rows}


def fetch_dedup(idle_share: float = 0.7, players: int = 1000, rounds: int = 24) -> dict:
    """Observations per fetch when `idle_share` of the players are idle: the simulator's idle
    and active accounts mixed in that share, each fetched hourly for `rounds` hours, an
    observation counted when the fetcher's payload_hash differs from the player's last one."""
    pop = Population(4 * players, seed=1, tick_s=3600)
    idle = [p for p in pop.players if not p.active and "hiscore_oldschool" in p.boards]
    active = [p for p in pop.players if p.active and "hiscore_oldschool" in p.boards]
    n_idle = round(players * idle_share)
    chosen = idle[:n_idle] + active[: players - n_idle]
    last_hash: dict[str, str] = {}
    fetches = stored = 0
    t0 = pop.epoch + 10 * 86_400
    for k in range(rounds + 1):  # the first round fills the hashes, as a fetcher's start does
        for i, player in enumerate(chosen):
            state = pop.truth(player, t0 + k * 3600 + i % 3600)
            digest = payload_hash(state.skills, state.activities)
            if k > 0:
                fetches += 1
                stored += last_hash[player.key] != digest
            last_hash[player.key] = digest
    return {
        "observations_per_fetch_70pct_idle": stored / fetches,
        "fetch_dedup_idle_share": n_idle / len(chosen),
        "fetch_dedup_active_share": 1 - n_idle / len(chosen),
        "fetch_dedup_fetches": fetches,
    }
