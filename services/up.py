"""`osrs-diff up`: the whole product in the foreground, on one machine.

NATS from NATS_URL or an embedded nats-server; Postgres from DATABASE_URL or a cluster under
`.data/`; migrations; then the four services as separate processes. Ctrl-C or SIGTERM stops
everything. `--demo` adds the hiscores simulator and a few tracked players."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.local import (
    LocalNats,
    LocalPostgres,
    LocalServerError,
    free_port,
    terminate,
    wait_for_port,
)
from shared import db
from shared.settings import Settings

log = logging.getLogger("osrs.up")

SERVICES = ("projector", "fetcher", "scheduler", "api")
DEMO_USER, DEMO_PASSWORD = "admin", "osrs-demo"
DEMO_PLAYERS = 6
HEALTHY_S = 60.0  # a service up this long has its restart delay reset


@dataclass
class Child:
    name: str
    args: list[str]
    proc: subprocess.Popen
    started_at: float
    failures: int = 0


class Stack:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.nats: LocalNats | None = None
        self.postgres: LocalPostgres | None = None
        self.children: dict[str, Child] = {}
        self.env: dict[str, str] = {}
        self.stopping = False
        self.grace_s = Settings().shutdown_grace_s  # each service's, from SIGTERM to exit

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

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        # A session of its own: Ctrl-C reaches only this supervisor, which then stops the
        # services before the servers they depend on.
        # Combined logs: each line of the service, prefixed by its name, in the format the
        # supervisor's own output calls for (key=value on a terminal, JSON lines otherwise).
        env = {"OSRS_LOG_FORMAT": "text" if sys.stderr.isatty() else "json"} | env
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        threading.Thread(
            target=_relay_lines, args=(name, proc.stdout), name=f"log-{name}", daemon=True
        ).start()
        previous = self.children.get(name)
        self.children[name] = Child(
            name, args, proc, time.monotonic(), previous.failures if previous else 0
        )
        self.env = env
        return proc

    def start_services(self, env: dict[str, str]) -> None:
        for name in SERVICES:
            self.spawn(name, ["-m", f"services.{name}"], env)

    def watch(self) -> int:
        """Restart a service that dies (with a growing delay) until a signal arrives."""
        restart_at: dict[str, float] = {}
        while not self.stopping:
            now = time.monotonic()
            for child in list(self.children.values()):
                if child.proc.poll() is None:
                    if now - child.started_at > HEALTHY_S:
                        child.failures = 0
                    continue
                if child.name not in restart_at:
                    child.failures += 1
                    delay = min(30.0, 2.0 ** (child.failures - 1))
                    restart_at[child.name] = now + delay
                    log.error(
                        "service_exited name=%s code=%s restart_in=%.0fs",
                        child.name,
                        child.proc.returncode,
                        delay,
                    )
                elif now >= restart_at[child.name]:
                    del restart_at[child.name]
                    self.spawn(child.name, child.args, self.env)
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        """Services first, then the simulator they fetch from, then NATS and Postgres."""
        services = [c for c in self.children.values() if c.name != "sim"]
        simulator = [c for c in self.children.values() if c.name == "sim"]
        for group in (services, simulator):
            terminate([c.proc for c in group], self.grace_s + 2)
        if self.nats:
            self.nats.stop()
        if self.postgres:
            self.postgres.stop()


PID_FILE = "up.pid"
_output = threading.Lock()


def _relay_lines(name: str, stream) -> None:
    """Copy a service's output to ours, line by line, each line prefixed by the service."""
    prefix = f"{name:<9}| ".encode()
    for line in iter(stream.readline, b""):
        with _output:
            sys.stdout.buffer.write(prefix + line)
            sys.stdout.buffer.flush()
    stream.close()


def run(*, demo: bool, data_dir: Path, sim_players: int = 1000) -> int:
    env = dict(os.environ)
    stack = Stack(data_dir)
    stack.grace_s = Settings.from_env(env).shutdown_grace_s
    data_dir.mkdir(parents=True, exist_ok=True)

    def on_signal(signum, frame) -> None:
        stack.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    pid_file = data_dir / PID_FILE
    running = _running_pid(pid_file)
    if running:
        raise LocalServerError(
            f"osrs-diff up already runs on {data_dir} (pid {running}): `make down` stops it"
        )
    pid_file.write_text(str(os.getpid()))
    try:
        stack.start_infrastructure(env)
        if demo:
            env.setdefault("OSRS_DEV", "1")
            env.setdefault("OSRS_ADMIN_USERNAME", DEMO_USER)
            env.setdefault("OSRS_ADMIN_PASSWORD", DEMO_PASSWORD)
            env.setdefault("OSRS_FETCH_INTERVAL", "60")
            env["OSRS_HISCORES_URL"] = _start_simulator(stack, env, sim_players)
        else:
            _prepare_secrets(env, data_dir)
        stack.start_services(env)
        settings = Settings.from_env(env)
        _wait_ready(settings, stack)
        if demo:
            _seed_demo(settings)
        else:
            print(f"osrs-diff is running (Ctrl-C stops it): API {_base(settings)}", flush=True)
        return stack.watch()
    finally:
        stack.stop()
        pid_file.unlink(missing_ok=True)


def down(data_dir: Path, timeout_s: float = 60.0) -> str:
    """Stop the `osrs-diff up` running on `data_dir` as Ctrl-C would; says what happened."""
    pid = _running_pid(data_dir / PID_FILE)
    if not pid:
        return f"nothing runs on {data_dir}"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            raise LocalServerError(f"osrs-diff up (pid {pid}) still runs after {timeout_s:.0f} s")
        time.sleep(0.1)
    return f"stopped osrs-diff up (pid {pid})"


def _running_pid(pid_file: Path) -> int | None:
    """The pid in the file when that process still runs, else None (a stale file is removed)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if _alive(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _start_simulator(stack: Stack, env: dict[str, str], players: int) -> str:
    port = free_port(8001)
    # Tick 0 now: the population starts where its seed puts it and grows from there.
    args = [
        "-m",
        "services.cli",
        "sim",
        "--players",
        str(players),
        "--port",
        str(port),
        "--tick",
        "30",
        "--epoch",
        "now",
    ]
    wait_for_port(port, 20, stack.spawn("sim", args, env))
    return f"http://127.0.0.1:{port}"


def _prepare_secrets(env: dict[str, str], data_dir: Path) -> None:
    """Outside the demo: a JWT secret kept under `.data/` unless one is given, and a word on
    how to create the first admin."""
    if not env.get("OSRS_JWT_SECRET") and env.get("OSRS_DEV", "") not in ("1", "true"):
        secret_file = data_dir / "jwt_secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(48))
            secret_file.chmod(0o600)
        env["OSRS_JWT_SECRET"] = secret_file.read_text().strip()
        log.info("jwt_secret file=%s", secret_file)
    if not (env.get("OSRS_ADMIN_USERNAME") and env.get("OSRS_ADMIN_PASSWORD")):
        log.warning(
            "no OSRS_ADMIN_USERNAME/OSRS_ADMIN_PASSWORD: set both to create the first "
            "admin (only while no user exists)"
        )


def _base(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def _wait_ready(settings: Settings, stack: Stack, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=_base(settings), timeout=5) as client:
        while True:
            if stack.stopping:
                return
            if stack.children["api"].proc.poll() is not None:
                raise LocalServerError("the API exited during start-up; see its log above")
            try:
                if client.get("/health/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise LocalServerError(f"the API was not ready after {timeout_s:.0f} s")
            time.sleep(0.2)


def _seed_demo(settings: Settings) -> None:
    base = _base(settings)
    with httpx.Client(base_url=base, timeout=5) as client:
        answer = client.post(
            "/v1/auth/token",
            json={"username": settings.admin_username, "password": settings.admin_password},
        )
        if answer.status_code != 200:
            raise LocalServerError(
                f"cannot log in as {settings.admin_username!r} ({answer.status_code}): another "
                "admin exists in this data folder; set OSRS_ADMIN_USERNAME/OSRS_ADMIN_PASSWORD to "
                "it, or `make clean` to start afresh"
            )
        token = answer.json()["access_token"]
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
