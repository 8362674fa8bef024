"""The product as processes for the chaos runs: nats-server (file storage) and a durable
Postgres of its own, the hiscores simulator with real progress, the four services; and the
faults: kill -9 of a service, of nats-server, of Postgres (the postmaster and every backend at
once, as when its machine dies), SIGTERM of a service."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from services.local import LocalNats, LocalPostgres, free_port, terminate, wait_for_port
from shared import db

SERVICES = ("projector", "fetcher", "api", "scheduler")
WORKERS = ("projector", "fetcher", "scheduler")  # the API has /health/ready instead
USER, PASSWORD = "chaos", "chaos-password-1"
GRACE_S = 5.0  # OSRS_SHUTDOWN_GRACE_S of the services


@dataclass(frozen=True)
class Size:
    players: int
    interval_s: int  # every player is fetched this often
    tick_s: int  # an active simulated player gains something this often
    rounds: int  # each target is killed this many times, in a random order
    gap_s: tuple[float, float]  # pause after a recovery before the next fault
    outage_s: tuple[float, float]  # how long nats-server or Postgres stays down


SHORT = Size(players=600, interval_s=12, tick_s=6, rounds=1, gap_s=(1, 3), outage_s=(1, 2))
FULL = Size(players=2000, interval_s=30, tick_s=10, rounds=3, gap_s=(3, 8), outage_s=(1, 5))


def name_of(index: int) -> str:
    return f"Sim {index}"


def key_of(index: int) -> str:
    return f"sim_{index}"


class Stack:
    """nats-server, Postgres, the simulator and the four services, in `folder`."""

    def __init__(self, folder: Path, size: Size, seed: int) -> None:
        self.folder = folder
        self.size = size
        self.seed = seed
        self.nats = LocalNats(folder / "nats", free_port())
        self.postgres = LocalPostgres(folder / "pg", free_port())  # durable: fsync, as in prod
        self.procs: dict[str, subprocess.Popen] = {}
        self.killing: set[str] = set()  # processes the harness is killing on purpose
        self.crashes: list[str] = []
        self.sim_url = ""
        self.api_url = ""
        self.metrics_ports = {name: free_port() for name in WORKERS}
        self.env: dict[str, str] = {}

    # -- servers -------------------------------------------------------------------------

    def start(self) -> None:
        self.start_nats()
        self.postgres.start()
        db.ensure_database(self.postgres.url)
        db.migrate(self.postgres.url)
        sim_port, api_port = free_port(), free_port()
        self.sim_url = f"http://127.0.0.1:{sim_port}"
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OSRS_", "API_"))},
            "NATS_URL": self.nats.url,
            "DATABASE_URL": self.postgres.url,
            "OSRS_HISCORES_URL": self.sim_url,
            "OSRS_JWT_SECRET": secrets.token_urlsafe(48),
            "OSRS_ADMIN_USERNAME": USER,
            "OSRS_ADMIN_PASSWORD": PASSWORD,
            "OSRS_FETCH_RATE": "1000",
            "OSRS_FETCH_INTERVAL": str(self.size.interval_s),
            "OSRS_REFRESH_COOLDOWN": "5",
            "OSRS_SHUTDOWN_GRACE_S": str(GRACE_S),
            "OSRS_INSTANCE": "chaos-0",  # one replica of each, restarted in place (a pod)
            "API_PORT": str(api_port),
            "OSRS_LOG_FORMAT": "json",
        }
        sim = ["-m", "services.cli", "sim", "--players", str(self.size.players)]
        sim += ["--port", str(sim_port), "--tick", str(self.size.tick_s), "--epoch", "now"]
        self.spawn("sim", [*sim, "--seed", str(self.seed)])
        wait_for_port(sim_port, 30, self.procs["sim"])

    def start_nats(self) -> None:
        self.nats.start(log_file=self.folder / "nats.log")

    def spawn(self, name: str, args: list[str] | None = None) -> None:
        env = dict(self.env)
        if name in self.metrics_ports:
            env["OSRS_METRICS_PORT"] = str(self.metrics_ports[name])
        with open(self.folder / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, *(args or ["-m", f"services.{name}"])],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        terminate(list(reversed(self.procs.values())), GRACE_S + 5)
        self.nats.stop()
        self.postgres.discard()

    # -- faults --------------------------------------------------------------------------

    def kill_service(self, name: str) -> None:
        proc = self.procs[name]
        self.killing.add(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.killing.discard(name)

    def stop_service(self, name: str) -> int | None:
        """SIGTERM, as a rolling restart does; the exit status (None: still running after its
        grace and 5 s more, then killed)."""
        proc = self.procs[name]
        self.killing.add(name)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(GRACE_S + 5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None
        finally:
            self.killing.discard(name)

    def kill_nats(self) -> None:
        self.nats.stop(kill=True)

    def kill_postgres(self) -> None:
        """kill -9 of the postmaster and every backend at once: the server machine dies."""
        pid = int((self.postgres.data_dir / "postmaster.pid").read_text().split()[0])
        victims = [pid, *children_of(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(alive(v) for v in victims) and time.monotonic() < deadline:
            time.sleep(0.02)

    def start_postgres(self) -> None:
        """Back after a crash: crash recovery replays the WAL; retried while the old processes'
        shared memory is still going away."""
        deadline = time.monotonic() + 30
        while True:
            try:
                self.postgres.start()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def supervise(self) -> None:
        """Restart any service that exited without being killed, and remember it."""
        for name, proc in list(self.procs.items()):
            if name not in self.killing and proc.poll() is not None:
                tail = (self.folder / f"{name}.log").read_text(errors="replace")[-1500:]
                self.crashes.append(f"- {name} exited with {proc.returncode}: ...{tail[-600:]}")
                if name == "sim":
                    raise RuntimeError(f"the simulator died:\n{tail}")
                self.spawn(name)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
