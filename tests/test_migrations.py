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
