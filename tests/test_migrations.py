import psycopg

from shared import db

EXPECTED = {
    "metrics": {"id", "key", "name", "kind", "first_seen_at"},
    "players": {
        "id",
        "key",
        "display_name",
        "mode",
        "tracked",
        "interval_s",
        "tracked_at",
        "tracked_by",
        "untracked_at",
        "last_changed_at",
        "overall_xp",
        "total_level",
        "combat_level",
    },
    "fetch_status": {
        "player_key",
        "mode",
        "fetched_at",
        "outcome",
        "http_status",
        "detail",
        "not_found_streak",
    },
    "observations": {"player_id", "observed_at", "mode", "total_level", "data"},
    "projector_checkpoints": {"stream", "last_seq", "updated_at"},
    "users": {"id", "username", "password_hash", "role", "disabled", "created_at"},
    "schema_migrations": {"version", "name", "applied_at"},
    "achievements": {
        "player_id",
        "key",
        "kind",
        "metric",
        "threshold",
        "observed_at",
        "previous_at",
        "before_tracking",
    },
    "latest_values": {"player_id", "metric_id", "value"},
    "fetch_outcomes": {"hour", "outcome", "count"},
    "outbox": {"id", "subject", "payload", "created_at", "sent_at"},
    "refresh_tokens": {
        "token_hash",
        "family_id",
        "user_id",
        "created_at",
        "expires_at",
        "used_at",
        "revoked_at",
        "access_jti",
        "access_expires_at",
    },
    "revoked_tokens": {"jti", "user_id", "expires_at", "revoked_at"},
    "api_keys": {
        "id",
        "user_id",
        "name",
        "role",
        "key_hash",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    },
}


def _columns(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        ).fetchall()
    tables: dict[str, set[str]] = {}
    for table, column in rows:
        tables.setdefault(table, set()).add(column)
    return tables


def test_migrations_produce_the_expected_schema(database_url):
    assert _columns(database_url) == EXPECTED


def test_migrate_is_idempotent_and_records_versions(database_url):
    assert db.migrate(database_url) == []
    with psycopg.connect(database_url) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [v for v, _, _ in db.migrations()]


def test_migrate_creates_a_missing_database(postgres_server):
    from psycopg.conninfo import make_conninfo

    url = make_conninfo(postgres_server, dbname="osrs_fresh_migrate")
    try:
        assert db.migrate(url) == [v for v, _, _ in db.migrations()]
        assert _columns(url) == EXPECTED
    finally:
        with psycopg.connect(
            make_conninfo(postgres_server, dbname="postgres"), autocommit=True
        ) as c:
            c.execute("DROP DATABASE IF EXISTS osrs_fresh_migrate WITH (FORCE)")


async def test_a_migration_of_derived_models_makes_the_projector_replay_the_log(
    postgres_server, js
):
    """004 adds models derived from OSRS_EVT: it drops the stored observations and the log
    checkpoint, and the projector, starting over from the log, rebuilds them all."""
    from psycopg.conninfo import make_conninfo

    from tests.test_rebuild import Live, history, publish

    url = make_conninfo(postgres_server, dbname="osrs_migrate_replay")
    db.ensure_database(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for version, name, body in db.migrations()[:3]:
                conn.execute(body)
                conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (version, name))
            conn.execute(
                "INSERT INTO players (key, display_name, mode, tracked, interval_s, tracked_at)"
                " VALUES ('alice', 'Alice', 'regular', true, 3600, now())"
            )
            conn.execute(
                "INSERT INTO observations (player_id, observed_at, mode, data)"
                " SELECT id, now(), 'regular', '\\x0102'::bytea FROM players"
            )
            conn.execute("INSERT INTO projector_checkpoints VALUES ('OSRS_EVT', 29, now())")
        assert db.migrate(url) == [v for v, _, _ in db.migrations()[3:]]
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM observations").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM projector_checkpoints").fetchone() == (0,)
        await publish(js, *history())
        live = Live(js, url)
        await live.start()
        try:
            assert await live.projector.checkpoints() == {}  # the feed starts at the log's start
            assert await live.catch_up() == 29
        finally:
            for sub in live.subs.values():
                await sub.unsubscribe()
            await live.pool.close()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM observations").fetchone() == (24,)
            assert conn.execute("SELECT count(*) FROM achievements").fetchone()[0] > 0
            assert conn.execute("SELECT count(*) FROM latest_values").fetchone()[0] > 0
    finally:
        with psycopg.connect(
            make_conninfo(postgres_server, dbname="postgres"), autocommit=True
        ) as c:
            c.execute("DROP DATABASE IF EXISTS osrs_migrate_replay WITH (FORCE)")
