"""`osrs-diff rebuild`: the read models rebuilt from the event log equal the live ones, and the
live projector and the API carry on against the new tables."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from services.cli import main as cli
from services.fetcher.hiscores import parse_json, payload_hash
from services.projector.projection import Projector
from services.projector.rebuild import rebuild
from shared import nats as natsx
from shared import subjects
from shared.events import (
    FetchCompleted,
    FetchOutcome,
    HiscoreObserved,
    PlayerTracked,
    PlayerUntracked,
    PlayerUpdated,
)
from shared.modes import GameMode
from shared.settings import get_settings
from tests.hiscores_double import MID, with_gain

T = datetime(2026, 11, 1, tzinfo=UTC)

DUMP = {
    "players": "SELECT key, display_name, mode, tracked, interval_s, tracked_at, tracked_by,"
    " untracked_at, last_changed_at, overall_xp, total_level, combat_level FROM players",
    "observations": "SELECT p.key, o.observed_at, o.mode, o.total_level, o.data"
    " FROM observations o JOIN players p ON p.id = o.player_id",
    "achievements": "SELECT p.key, a.key, a.kind, a.metric, a.threshold, a.observed_at,"
    " a.previous_at, a.before_tracking FROM achievements a JOIN players p ON p.id = a.player_id",
    "latest_values": "SELECT p.key, m.key, l.value FROM latest_values l"
    " JOIN players p ON p.id = l.player_id JOIN metrics m ON m.id = l.metric_id",
    "metrics": "SELECT id, key, name, kind FROM metrics",
    "fetch_status": "SELECT * FROM fetch_status",
    "fetch_outcomes": "SELECT * FROM fetch_outcomes",
    "users": "SELECT id, username, password_hash, role, disabled FROM users",
    "checkpoints": "SELECT stream, last_seq FROM projector_checkpoints",
}


def dump(url: str) -> dict[str, list]:
    with psycopg.connect(url) as conn:
        return {name: sorted(conn.execute(query).fetchall()) for name, query in DUMP.items()}


def observed(key: str, hours: float, gains: dict) -> HiscoreObserved:
    parsed = parse_json(with_gain(MID, gains))
    return HiscoreObserved(
        player_key=key,
        display_name=key.title(),
        mode=GameMode.REGULAR,
        observed_at=T + timedelta(hours=hours),
        hash=payload_hash(parsed.skills, parsed.activities),
        skills=parsed.skills,
        activities=parsed.activities,
    )


def history() -> list:
    events = [
        PlayerTracked(player_key=k, display_name=k.title(), interval_s=3600, by="admin")
        for k in ("alice", "bob", "carol")
    ]
    for hour in range(12):
        events.append(observed("alice", hour, {"Attack": 1_000_000 * hour, "Zulrah": hour}))
        events.append(observed("bob", hour, {"Woodcutting": 50_000 * hour}))
    events += [
        PlayerUpdated(player_key="bob", interval_s=600, by="admin"),
        PlayerUntracked(player_key="carol", by="admin"),
    ]
    return events


async def publish(js, *events) -> None:
    for event in events:
        if isinstance(event, HiscoreObserved):
            subject = subjects.observed_subject(event.player_key)
        elif isinstance(event, FetchCompleted):
            subject = f"{subjects.STATUS_PREFIX}.{event.player_key}"
        else:
            subject = {
                PlayerTracked: subjects.PLAYER_TRACKED,
                PlayerUntracked: subjects.PLAYER_UNTRACKED,
                PlayerUpdated: subjects.PLAYER_UPDATED,
            }[type(event)]
        stream = subjects.STATUS_STREAM if isinstance(event, FetchCompleted) else None
        await natsx.publish(
            js, subject, event, msg_id=event.id, stream=stream or subjects.EVT_STREAM
        )


class Live:
    """The live projector: the same instance (and pool) before and after the swap."""

    def __init__(self, js, url):
        self.js = js
        self.pool = AsyncConnectionPool(url, open=False, min_size=1, max_size=2)
        self.subs = {}

    async def start(self):
        await self.pool.open(wait=True)
        self.projector = Projector(self.pool, self.dead_letter)
        await self.projector.seed_metrics()
        for stream, subject in (
            (subjects.EVT_STREAM, "osrs.evt.>"),
            (subjects.STATUS_STREAM, f"{subjects.STATUS_PREFIX}.*"),
        ):
            self.subs[stream] = await self.js.pull_subscribe(subject, stream=stream)

    async def stop(self):
        """Its pull subscriptions too: one left open holds the connection's drain for 30 s."""
        for sub in self.subs.values():
            await sub.unsubscribe()
        await self.pool.close()

    async def dead_letter(self, msg, reason):
        raise AssertionError(f"dead-lettered: {reason}")

    async def catch_up(self) -> int:
        applied = 0
        for stream, sub in self.subs.items():
            while True:
                try:
                    msgs = await sub.fetch(100, timeout=0.5)
                except TimeoutError:
                    break
                applied += await self.projector.apply_batch(stream, msgs)
                for msg in msgs:
                    await msg.ack()
        return applied


@pytest.fixture
async def live(js, database_url):
    projector = Live(js, database_url)
    await projector.start()
    yield projector
    await projector.stop()


async def test_the_rebuilt_models_equal_the_live_ones(js, settings, database_url, live):
    await publish(js, *history())
    await publish(
        js,
        FetchCompleted(player_key="alice", mode=GameMode.REGULAR, outcome=FetchOutcome.CHANGED),
        FetchCompleted(player_key="bob", mode=GameMode.REGULAR, outcome=FetchOutcome.UNCHANGED),
    )
    assert await live.catch_up() == 3 + 24 + 2 + 2
    # A reader with server-side prepared statements, like the API's pooled connections.
    reader = await psycopg.AsyncConnection.connect(
        database_url, prepare_threshold=0, autocommit=True
    )
    count = "SELECT count(*) FROM observations o JOIN players p ON p.id = o.player_id"
    assert await (await reader.execute(count)).fetchone() == (24,)
    live_models = dump(database_url)

    shown = []
    report = await rebuild(settings, progress=lambda done, total: shown.append((done, total)))
    assert report.events == 29 and report.dead == 0 and shown[-1] == (29, 29)
    assert dump(database_url) == live_models
    assert await (await reader.execute(count)).fetchone() == (24,)

    async def race():
        # An event the live projector applies to the old models after the new ones were
        # built: the swap must not lose it.
        await publish(js, observed("alice", 12, {"Attack": 13_000_000, "Zulrah": 500}))
        assert await live.catch_up() == 1

    await rebuild(settings, before_swap=race)
    # The live projector goes on, now into the new tables.
    await publish(js, observed("bob", 12, {"Woodcutting": 13_000_000}))
    assert await live.catch_up() == 1
    live_models = dump(database_url)
    assert len(live_models["observations"]) == 26
    assert ("alice", "level_99.attack") in {a[:2] for a in live_models["achievements"]}
    assert live_models["checkpoints"] == [(subjects.EVT_STREAM, 31), (subjects.STATUS_STREAM, 2)]
    assert await (await reader.execute(count)).fetchone() == (26,)
    await rebuild(settings)
    assert dump(database_url) == live_models
    await reader.close()
    with psycopg.connect(database_url) as conn:
        schemas = {s for (s,) in conn.execute("SELECT nspname FROM pg_namespace")}
    assert "osrs_rebuild" not in schemas and "osrs_replaced" not in schemas


def test_the_command_line(settings, monkeypatch, capsys):
    monkeypatch.setenv("NATS_URL", settings.nats_url)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("OSRS_DEV", "1")
    get_settings.cache_clear()
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "INSERT INTO players (key, display_name, mode, tracked, interval_s, tracked_at)"
            " VALUES ('zezima', 'Zezima', 'regular', true, 3600, now())"
        )
    assert cli(["rebuild"]) == 1  # the log is empty: the models would lose their players
    assert "OSRS_EVT is empty but the read models hold 1 players" in capsys.readouterr().err
    assert cli(["rebuild", "--keep-old", "--force"]) == 0
    assert "rebuilt the read models from 0 events" in capsys.readouterr().err
    with psycopg.connect(settings.database_url) as conn:
        schemas = {s for (s,) in conn.execute("SELECT nspname FROM pg_namespace")}
    assert "osrs_replaced" in schemas
