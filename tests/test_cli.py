import os
import subprocess
import sys

import psycopg
from psycopg.conninfo import make_conninfo


def osrs_diff(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def test_migrate_creates_the_database_then_reports_it_up_to_date(postgres_server):
    url = make_conninfo(postgres_server, dbname="osrs_cli_migrate")
    try:
        first = osrs_diff("migrate", DATABASE_URL=url)
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == "applied migrations: 1, 2"
        again = osrs_diff("migrate", DATABASE_URL=url)
        assert again.stdout.strip() == "schema is up to date"
    finally:
        admin = make_conninfo(postgres_server, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS osrs_cli_migrate WITH (FORCE)")


def test_a_malformed_setting_is_a_clear_error():
    result = osrs_diff("migrate", OSRS_FETCH_INTERVAL="hourly")
    assert result.returncode == 2
    assert "OSRS_FETCH_INTERVAL must be an integer" in result.stderr


def test_an_unreachable_database_is_a_clear_error():
    result = osrs_diff("migrate", DATABASE_URL="postgresql://postgres@127.0.0.1:9/osrs")
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr
