"""Servers for the integration tests: a nats-server started for the session, and Postgres from
DATABASE_URL, else a throw-away cluster, else testcontainers when a Docker engine answers."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from services.local import LocalNats, LocalPostgres, LocalServerError, free_port
from shared import db
from shared.settings import Settings

DATA = Path(__file__).parent / "data"
pytest_plugins = ["tests.sim_fixtures"]  # the simulator tests' population, clock and app


@pytest.fixture(scope="session")
def tmp_root():
    root = Path(tempfile.mkdtemp(prefix="osrs-test-"))
    root.chmod(0o755)  # the postgres user must reach the throw-away cluster inside
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def nats_server(tmp_path):
    """A nats-server of its own for each test (it starts in milliseconds): no state leaks
    between tests, not even JetStream's duplicate window."""
    server = LocalNats(tmp_path / "nats", free_port()).start(log_file=tmp_path / "nats.log")
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server) -> str:
    return nats_server.url


def _docker_answers() -> bool:
    """Cheap: a socket or DOCKER_HOST must exist, then a 1 s ping."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        docker.from_env(timeout=1).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means no engine
        return False


@pytest.fixture(scope="session")
def postgres_server(tmp_root):
    """A server URL (database part ignored) for the session."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    try:
        cluster = LocalPostgres(tmp_root / "pg", free_port(), durable=False).start()
    except LocalServerError as local_error:
        if not _docker_answers():
            pytest.fail(
                "no Postgres for the integration tests: set DATABASE_URL, or install PostgreSQL "
                f"server binaries ({local_error}), or run a Docker engine for testcontainers"
            )
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver=None) as container:
            yield container.get_connection_url()
        return
    yield cluster.url
    cluster.discard()


_TEMPLATE = f"osrs_tpl_{os.getpid()}"
_counter = itertools.count()


@pytest.fixture(scope="session")
def template_db(postgres_server) -> str:
    """A migrated database that every test database is copied from."""
    url = make_conninfo(postgres_server, dbname=_TEMPLATE)
    db.migrate(url)
    yield _TEMPLATE
    with psycopg.connect(make_conninfo(postgres_server, dbname="postgres"), autocommit=True) as c:
        c.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_TEMPLATE))
        )


@pytest.fixture
def database_url(postgres_server, template_db) -> str:
    """A fresh, migrated database for one test."""
    name = f"osrs_t{os.getpid()}_{next(_counter)}"
    admin = make_conninfo(postgres_server, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    yield make_conninfo(postgres_server, dbname=name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def settings(nats_url, database_url) -> Settings:
    return Settings(
        nats_url=nats_url,
        database_url=database_url,
        jwt_secret="x" * 32,
        admin_username="admin",
        admin_password="correct horse",
        dev=False,
    )


@pytest.fixture
async def js(nats_url):
    """A JetStream context with every stream and bucket declared."""
    import nats

    from shared import nats as natsx

    nc = await nats.connect(nats_url)
    jsc = nc.jetstream()
    await natsx.declare(jsc, Settings(nats_url=nats_url))
    yield jsc
    await nc.drain()


@pytest.fixture
async def client(settings, js):
    """The API app, with the admin of the settings logged in."""
    from litestar.testing import AsyncTestClient

    from services.api.app import create_app

    async with AsyncTestClient(app=create_app(settings)) as test_client:
        token = (
            await test_client.post(
                "/v1/auth/token", json={"username": "admin", "password": "correct horse"}
            )
        ).json()["access_token"]
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client
