"""The Postgres helper: pools, creating the database, and the numbered SQL migrations."""

from __future__ import annotations

import logging
import re
from importlib import resources

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("osrs.db")

_MIGRATION_FILE = re.compile(r"(\d{3})_([a-z0-9_]+)\.sql")
_MIGRATION_LOCK = 0x05C5D1FF  # pg_advisory_lock id: one migrator at a time


def pool(
    database_url: str, *, min_size: int = 1, max_size: int = 10, name: str
) -> AsyncConnectionPool:
    """An unopened pool; open it in the lifespan with `await pool.open(wait=True)`."""
    return AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name,
        kwargs={"application_name": name},
    )


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("shared").joinpath("migrations").iterdir():
        match = _MIGRATION_FILE.fullmatch(entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n without gaps: {versions}")
    return found


def ensure_database(database_url: str) -> None:
    """Create the database named in the URL when the server does not have it yet."""
    params = conninfo_to_dict(database_url)
    dbname = params.get("dbname") or params.get("user") or "postgres"
    admin = make_conninfo(database_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
                log.info("database_created name=%s", dbname)
            except psycopg.errors.DuplicateDatabase:
                pass  # created by a concurrent migrator


def migrate(database_url: str) -> list[int]:
    """Apply the migrations not applied yet, each in its own transaction; returns their versions."""
    ensure_database(database_url)
    applied_now = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, body in migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(body)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied_now.append(version)
                log.info("migration_applied version=%03d name=%s", version, name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied_now
