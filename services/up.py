"""`osrs-diff up`: the whole product in the foreground, on one machine.

NATS from NATS_URL or an embedded nats-server; Postgres from DATABASE_URL or a cluster under
`.data/`; migrations; then the four services as separate processes. Ctrl-C or SIGTERM stops
everything. `--demo` adds the hiscores simulator and a few tracked players."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.local import LocalNats, LocalPostgres, free_port, wait_for_port
from shared import db
from shared.settings import Settings

log = logging.getLogger("osrs.up")

SERVICES = ("projector", "fetcher", "scheduler", "api")
DEMO_USER, DEMO_PASSWORD = "admin", "osrs-demo"
DEMO_PLAYERS = 6


class Stack:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.nats: LocalNats | None = None
        self.postgres: LocalPostgres | None = None
        self.children: dict[str, subprocess.Popen] = {}
        self.stopping = False

    def start_infrastructure(self, env: dict[str, str]) -> None:
        if not env.get("NATS_URL"):
            self.nats = LocalNats(self.data_dir / "nats", free_port(14222))
            self.nats.start(log_file=self.data_dir / "nats.log")
            env["NATS_URL"] = self.nats.url
            log.info("nats_started url=%s store=%s", self.nats.url, self.nats.store_dir)
        if not env.get("DATABASE_URL"):
            self.postgres = LocalPostgres(self.data_dir / "postgres", free_port(15432)).start()
            env["DATABASE_URL"] = self.postgres.url
            log.info("postgres_started url=%s data=%s", self.postgres.url, self.postgres.data_dir)
        applied = db.migrate(env["DATABASE_URL"])
        log.info("migrated applied=%s", applied or "none")

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.children[name] = subprocess.Popen([sys.executable, *args], env=env)

    def start_services(self, env: dict[str, str]) -> None:
        for name in SERVICES:
            self.spawn(name, ["-m", f"services.{name}"], env)

    def watch(self) -> int:
        """Wait until a signal or until a child dies; returns the exit code."""
        while not self.stopping:
            for name, proc in self.children.items():
                if proc.poll() is not None:
                    log.error(
                        "service_exited name=%s code=%s: stopping everything", name, proc.returncode
                    )
                    return 1
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.children.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.nats:
            self.nats.stop()
        if self.postgres:
            self.postgres.stop()


def run(*, demo: bool, data_dir: Path, sim_players: int = 1000) -> int:
    env = dict(os.environ)
    stack = Stack(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)

    def on_signal(signum, frame) -> None:
        stack.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start_infrastructure(env)
        if demo:
            env.setdefault("OSRS_DEV", "1")
            env.setdefault("OSRS_ADMIN_USERNAME", DEMO_USER)
            env.setdefault("OSRS_ADMIN_PASSWORD", DEMO_PASSWORD)
            env.setdefault("OSRS_FETCH_INTERVAL", "60")
            sim_port = free_port(8001)
            stack.spawn(
                "sim",
                [
                    "-m",
                    "services.cli",
                    "sim",
                    "--players",
                    str(sim_players),
                    "--port",
                    str(sim_port),
                    "--tick",
                    "30",
                ],
                env,
            )
            wait_for_port(sim_port, 20, stack.children["sim"])
            env["OSRS_HISCORES_URL"] = f"http://127.0.0.1:{sim_port}"
        stack.start_services(env)
        settings = Settings.from_env(env)
        if demo:
            _seed_demo(settings, stack)
        return stack.watch()
    finally:
        stack.stop()


def _seed_demo(settings: Settings, stack: Stack) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base, timeout=5) as client:
        while True:
            if stack.children["api"].poll() is not None:
                raise SystemExit("the API exited during start-up; see its log above")
            try:
                if client.get("/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API was not ready after 60 s")
            time.sleep(0.2)
        token = client.post(
            "/v1/auth/token",
            json={
                "username": settings.admin_username,
                "password": settings.admin_password,
            },
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        names = [f"Sim {i}" for i in range(1, DEMO_PLAYERS + 1)]
        for name in names:
            client.post("/v1/players", json={"name": name}, headers=auth)
    first = names[0].replace(" ", "%20")
    login = f'{{"username": "{settings.admin_username}", "password": "{settings.admin_password}"}}'
    print(
        f"""
osrs-diff demo is running (Ctrl-C stops it).
  API         {base}      OpenAPI: {base}/schema/swagger
  hiscores    {settings.hiscores_url}  (the simulator, {len(names)} players tracked)
  log in      TOKEN=$(curl -s -X POST {base}/v1/auth/token -H 'content-type: application/json' \\
                -d '{login}' \\
                | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  a player    curl -s {base}/v1/players/{first} -H "Authorization: Bearer $TOKEN"
  all players curl -s {base}/v1/players -H "Authorization: Bearer $TOKEN"
""",
        flush=True,
    )
