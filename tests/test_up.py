"""`osrs-diff up --demo` as a new user runs it: embedded NATS and Postgres, the four services,
the simulator; stats served within seconds; SIGTERM stops everything."""

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from services.local import free_port

pytestmark = pytest.mark.e2e


def test_demo_serves_a_simulated_player_and_stops_cleanly_on_sigterm(tmp_root):
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env |= {"API_PORT": str(api_port), "PYTHONUNBUFFERED": "1"}
    log_path = tmp_root / "up-demo.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "up",
                "--demo",
                "--players",
                "20",
                "--data-dir",
                str(tmp_root / "up-demo"),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "demo is running" not in log_path.read_text():
            assert up.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        base = f"http://127.0.0.1:{api_port}"
        token = httpx.post(
            f"{base}/v1/auth/token", json={"username": "admin", "password": "osrs-demo"}
        ).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        while True:
            player = httpx.get(f"{base}/v1/players/Sim 1", headers=headers).json()
            if player.get("skills"):
                break
            assert time.monotonic() < deadline, (player, log_path.read_text())
            time.sleep(0.2)
        assert player["skills"]["overall"]["xp"] > 0 and player["status"] == "active"
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            code = up.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            raise
    assert code == 0, log_path.read_text()
    leftovers = subprocess.run(["pgrep", "-s", str(up.pid)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "processes left running after SIGTERM"
