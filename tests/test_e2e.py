"""End to end: the simulator and the four services as separate processes, on a real NATS
JetStream server and a real Postgres."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from services.local import free_port, wait_for_port
from shared import subjects

pytestmark = pytest.mark.e2e

SERVICES = ("projector", "fetcher", "scheduler", "api")
INTERVAL_S = 2


class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            [sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        return self.procs[name]

    def dump(self) -> str:
        return "\n".join(
            f"----- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.logs.glob("*.log"))
        )

    def stop(self) -> dict[str, int | None]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = None
        return codes


async def _until(check, timeout: float, what: str, procs: Processes):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        for name, proc in procs.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}\n{procs.dump()}"
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{procs.dump()}")
        await asyncio.sleep(0.2)


def _observations(database_url: str, key: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM observations o JOIN players p ON p.id = o.player_id"
            " WHERE p.key = %s",
            (key,),
        ).fetchone()[0]


async def test_tracked_players_flow_through_every_service(tmp_path, nats_url, database_url, js):
    procs = Processes(tmp_path)
    sim_port, api_port = free_port(), free_port()
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "OSRS_HISCORES_URL": f"http://127.0.0.1:{sim_port}",
        "OSRS_JWT_SECRET": "e2e-" * 8,
        "OSRS_ADMIN_USERNAME": "admin",
        "OSRS_ADMIN_PASSWORD": "e2e password",
        "OSRS_FETCH_INTERVAL": str(INTERVAL_S),
        "API_PORT": str(api_port),
        "OSRS_LOG_LEVEL": "INFO",
    }
    try:
        sim = procs.start(
            "sim",
            [
                "-m",
                "services.cli",
                "sim",
                "--players",
                "40",
                "--port",
                str(sim_port),
                "--tick",
                "1",
            ],
            env,
        )
        wait_for_port(sim_port, 20, sim)
        for name in SERVICES:
            procs.start(name, ["-m", f"services.{name}"], env)
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=5) as api,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{sim_port}", timeout=5) as hiscores,
        ):
            population = (await hiscores.get("/_sim/players", params={"limit": 40})).json()
            active = next(p for p in population if p["active"])
            idle = next(p for p in population if not p["active"])

            async def ready():
                try:
                    return (await api.get("/health/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

            await _until(ready, 30, "the API to be ready", procs)
            token = (
                await api.post(
                    "/v1/auth/token", json={"username": "admin", "password": "e2e password"}
                )
            ).json()["access_token"]
            api.headers["Authorization"] = f"Bearer {token}"
            for player in (active, idle):
                response = await api.post("/v1/players", json={"name": player["name"]})
                assert response.status_code == 202, response.text

            async def stats_of(player):
                response = await api.get(f"/v1/players/{player['name']}")
                body = response.json() if response.status_code == 200 else {}
                return body if body.get("skills", {}).get("overall", {}).get("xp", 0) > 0 else None

            for player in (active, idle):
                body = await _until(
                    lambda p=player: stats_of(p), 30, f"{player['name']}'s stats", procs
                )
                assert body["status"] == "active" and body["display_name"] == player["name"]
                assert len(body["skills"]) == 25 and len(body["activities"]) == 91
                assert body["total_level"] >= 32 and body["combat_level"] >= 3

            # A few scheduled fetches later: the active player has new observations, the idle
            # one still has only its first, although it was fetched again.
            async def active_grew():
                return _observations(database_url, active["key"]) >= 3

            await _until(active_grew, 30, "the active player's new observations", procs)
            idle_body = (await api.get(f"/v1/players/{idle['key']}")).json()
            assert idle_body["last_outcome"] == "unchanged"
            fetched = datetime.fromisoformat(idle_body["last_fetched_at"])
            changed = datetime.fromisoformat(idle_body["last_changed_at"])
            assert (fetched - changed).total_seconds() >= 1  # fetched again after its change
            assert _observations(database_url, idle["key"]) == 1
            info = await js.stream_info(subjects.EVT_STREAM, subjects_filter="osrs.evt.hiscore.>")
            observed = info.state.subjects or {}
            assert observed.get(subjects.observed_subject(idle["key"])) == 1
            assert observed.get(subjects.observed_subject(active["key"]), 0) >= 3
    finally:
        codes = procs.stop()
    assert all(codes[name] == 0 for name in SERVICES), f"{codes}\n{procs.dump()}"
