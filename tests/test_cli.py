import os
import subprocess
import sys

import psycopg
from psycopg.conninfo import make_conninfo

from shared import db


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
        every = ", ".join(str(version) for version, _, _ in db.migrations())
        assert first.stdout.strip() == f"applied migrations: {every}"
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


def test_sim_refuses_a_bad_fault_with_a_clear_error():
    result = osrs_diff("sim", "--players", "5", "--port", "9", "--fault-rate", "teapot=0.5")
    assert result.returncode == 2
    assert "teapot" in result.stderr


def test_sim_serves_a_new_boss_given_on_the_command_line():
    import httpx

    from tests.sim_fixtures import simulator_process

    args = ("--players", "5", "--new-boss", "Brand New Boss@Zulrah", "--fault-prefix", "Down=503")
    with simulator_process(*args) as url:
        base = f"{url}/m=hiscore_oldschool"
        payload = httpx.get(f"{base}/index_lite.json", params={"player": "Sim 1"}).json()
        assert payload["activities"][-1]["name"] == "Brand New Boss"
        csv = httpx.get(f"{base}/index_lite.ws", params={"player": "Sim 1"}).text
        assert len(csv.splitlines()) == 25 + 92
        assert httpx.get(f"{base}/index_lite.json", params={"player": "Down 1"}).status_code == 503
