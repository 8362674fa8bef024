"""Issue 8's `rss_mb_<service>` and `freshness_p99_ms`, on the whole stack run as separate
processes (simulator, projector, fetcher, api, scheduler) over a nats-server and a Postgres
that this script starts itself.

    .venv/bin/python bench/stack.py            # quick: 10k tracked players (~60 s)
    .venv/bin/python bench/stack.py --full     # full: 100k tracked players

The run, in order:
1. nats-server, Postgres (LocalPostgres(durable=False), or the database `osrs_stack` on
   DATABASE_URL's server), migrations, the simulator with as many players as are tracked.
2. `PlayerTracked` for every player, published straight to OSRS_EVT (as `osrs-diff import`
   does, without its one-by-one manual fetches), stamped two hours ago: every player's
   current slot is owed, as after a big import or a scheduler that was down for a while.
3. projector, fetcher and api start; the projector applies the events (players table).
4. freshness baseline: manual refreshes with nothing else to do (no scheduler yet).
5. the scheduler starts, replays the players and publishes every owed slot: the fetcher is
   busy with a backlog of scheduled fetches, the projector with their results.
6. freshness under that load, then, after the stack ran a while, RSS of every process.

A refresh's new value comes from a simulator pin (POST /_sim/pin/{name}, forever): the
player's true payload with one activity score raised to a value no fetch has seen; the
latency is from POST /v1/players/{name}/refresh until GET /v1/players/{name} shows it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.local import (  # noqa: E402
    LocalNats,
    LocalPostgres,
    bench_database,
    free_port,
    terminate,
    wait_for_port,
)
from shared import nats as natsx  # noqa: E402
from shared import subjects  # noqa: E402
from shared.events import PlayerTracked, encode  # noqa: E402
from shared.metrics import metric_key  # noqa: E402
from shared.modes import GameMode  # noqa: E402
from shared.settings import Settings  # noqa: E402

SIZES = {
    "quick": {"players": 10_000, "refreshes": 20, "timeout_s": 15.0, "settle_s": 5.0},
    "full": {"players": 100_000, "refreshes": 60, "timeout_s": 60.0, "settle_s": 30.0},
}
SERVICES = ("projector", "fetcher", "api", "scheduler")
BENCH_DB = "osrs_stack"
USER, PASSWORD = "bench", "bench-password-1"
INTERVAL_S = 3600
PINNED_ACTIVITY = "Clue Scrolls (all)"
FETCH_RATE = "1000"  # per second: the limiter out of the way, the fetcher as fast as it goes
UNPACED = 10**9  # min_queued that turns the scheduler's limit off: every owed slot at once
REFRESH_GAP_S = 0.25  # between two refreshes: they overlap, each is timed on its own

_RSS_WHAT = (
    "VmRSS after the run (VmHWM, the peak, as rss_peak_mb_*); the baseline is a bare "
    "`python -c 'import services.<x>.app'` of the same interpreter"
)
ROWS: dict[str, tuple[str, str | None, str]] = {
    "freshness_p99_ms": (
        "<= 500",
        "freshness_idle_p99_ms",
        "manual refresh -> value through the API while the fetcher works through 100k owed "
        "scheduled fetches: the refresh waits in OSRS_CMD (one FIFO work queue) behind the "
        "~10 commands the scheduler keeps waiting there and the 8 being fetched, then its own "
        "fetch (~80-120 ms under load), the projector's batch and the API poll; unpaced, it "
        "waited behind the whole backlog (minutes); see bench/stack.md",
    ),
    "freshness_p50_ms": ("", "freshness_idle_p50_ms", "as freshness_p99_ms, the median"),
    "freshness_idle_p99_ms": (
        "baseline",
        None,
        "the same round trip with no scheduler running: fetch + projector batch + API poll",
    ),
    **{
        f"rss_mb_{name}": ("<= 150", f"rss_import_mb_{name}", _RSS_WHAT)
        for name in ("api", "fetcher", "projector", "scheduler")
    },
    "rss_mb_sim": ("info", "rss_import_mb_sim", _RSS_WHAT + " (sim.app)"),
}
IMPORTS = {
    "api": "services.api.app",
    "fetcher": "services.fetcher.app",
    "projector": "services.projector.app",
    "scheduler": "services.scheduler.app",
    "sim": "sim.app",
}


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def import_rss_mb(module: str) -> float:
    code = (
        f"import {module}, pathlib; "
        "print([l for l in pathlib.Path('/proc/self/status').read_text().splitlines() "
        "if l.startswith('VmRSS')][0].split()[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


class Stack:
    """The servers and processes of one run, stopped in reverse order by `stop`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.nats: LocalNats | None = None
        self.postgres: LocalPostgres | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.env: dict[str, str] = {}
        self.metrics_ports: dict[str, int] = {}

    def start_servers(
        self, players: int, sim_args: tuple[str, ...] = (), nats_monitor: bool = False
    ) -> None:
        """`sim_args`: more simulator options (bench/soak.py: `--tick`); `nats_monitor`:
        nats-server's monitoring on a port of its own (`self.nats.monitor_port`)."""
        monitor_port = free_port() if nats_monitor else None
        self.nats = LocalNats(self.folder / "nats", free_port(), monitor_port).start(
            log_file=self.folder / "nats.log"
        )
        database_url, self.postgres = bench_database(self.folder / "pg", BENCH_DB)
        sim_port, api_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "NATS_URL": self.nats.url,
            "DATABASE_URL": database_url,
            "OSRS_HISCORES_URL": f"http://127.0.0.1:{sim_port}",
            "OSRS_JWT_SECRET": secrets.token_urlsafe(48),
            "OSRS_ADMIN_USERNAME": USER,
            "OSRS_ADMIN_PASSWORD": PASSWORD,
            "OSRS_FETCH_RATE": FETCH_RATE,
            "OSRS_FETCH_INTERVAL": str(INTERVAL_S),
            "API_PORT": str(api_port),
            "OSRS_LOG_FORMAT": "json",
        }
        self.env.pop("OSRS_DEV", None)
        args = ["-m", "services.cli", "sim", "--players", str(players), "--port", str(sim_port)]
        self.spawn("sim", [*args, "--epoch", "now", *sim_args])
        wait_for_port(sim_port, 60, self.procs["sim"])

    def spawn(self, name: str, args: list[str]) -> None:
        env = dict(self.env)
        if name in ("projector", "fetcher", "scheduler"):
            self.metrics_ports[name] = free_port()
            env["OSRS_METRICS_PORT"] = str(self.metrics_ports[name])
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        self.procs[name] = subprocess.Popen(
            [sys.executable, *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def start_service(self, name: str) -> None:
        self.spawn(name, ["-m", f"services.{name}"])

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.folder / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        terminate(list(reversed(self.procs.values())), 25)
        if self.nats:
            self.nats.stop()
        if self.postgres:
            self.postgres.discard()  # also when, as root, it lives under /var/tmp


def name_of(index: int) -> str:
    return f"Sim {index}"


async def track_players(nats_url: str, players: int, interval_s: int = INTERVAL_S) -> None:
    """PlayerTracked for Sim 1..players, stamped two hours ago (their current slot is owed)."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        await natsx.declare(js, Settings(nats_url=nats_url))
        at = datetime.now(UTC) - timedelta(hours=2)
        for start in range(1, players + 1, 1000):
            batch = []
            for i in range(start, min(start + 1000, players + 1)):
                event = PlayerTracked(
                    player_key=f"sim_{i}",
                    display_name=name_of(i),
                    mode=GameMode.REGULAR,
                    interval_s=interval_s,
                    by="bench",
                    at=at,
                )
                batch.append(
                    js.publish(
                        subjects.PLAYER_TRACKED,
                        encode(event),
                        stream=subjects.EVT_STREAM,
                        headers={"Nats-Msg-Id": event.id},
                    )
                )
            await asyncio.gather(*batch)
    finally:
        await client.close()


async def wait_until(what: str, check, timeout_s: float, stack: Stack, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while True:
        stack.check_alive()
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout_s:.0f} s")
        await asyncio.sleep(every_s)


async def tracked_in_db(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        row = await (await conn.execute("SELECT count(*) FROM players WHERE tracked")).fetchone()
    return row[0]


async def fetched_in_db(database_url: str) -> int:
    """Players fetched at least once (the projector's fetch_status rows)."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        row = await (await conn.execute("SELECT count(*) FROM fetch_status")).fetchone()
    return row[0]


async def cmd_backlog(nats_url: str) -> int:
    client = await nats.connect(nats_url)
    try:
        info = await client.jetstream().stream_info(subjects.CMD_STREAM)
        return info.state.messages
    finally:
        await client.close()


async def ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


class Freshness:
    """Manual refreshes of distinct players, each timed until the API shows its pinned value."""

    def __init__(self, stack: Stack, api: httpx.AsyncClient, sim: httpx.AsyncClient) -> None:
        self.stack = stack
        self.api = api
        self.sim = sim
        self.metric = metric_key(PINNED_ACTIVITY)

    async def pin(self, index: int, marker: int) -> int:
        """Pin the player's true payload with the clue count raised; returns the new score."""
        truth = (await self.sim.get("/_sim/truth", params={"player": name_of(index)})).json()
        for entry in truth["activities"]:
            if entry["name"] == PINNED_ACTIVITY:
                entry["score"] = max(entry["score"], 0) + 100_000 + marker
                entry["rank"] = max(entry["rank"], 1)
                score = entry["score"]
        answer = await self.sim.post(
            f"/_sim/pin/{name_of(index)}", json={"body": truth, "times": -1}
        )
        answer.raise_for_status()
        return score

    async def one(self, index: int, score: int, timeout_s: float) -> float | None:
        """ms from the refresh until the API shows `score`; None past `timeout_s`."""
        name = name_of(index)
        started = time.perf_counter()
        answer = await self.api.post(f"/v1/players/{name}/refresh")
        if answer.status_code != 202:
            raise RuntimeError(f"refresh {name}: {answer.status_code} {answer.text}")
        while (elapsed := time.perf_counter() - started) < timeout_s:
            body = (await self.api.get(f"/v1/players/{name}")).json()
            shown = (body.get("activities") or {}).get(self.metric, {}).get("score")
            if shown == score:
                return (time.perf_counter() - started) * 1000
            await asyncio.sleep(0.02 if elapsed < 1 else 0.25)  # fine first, then light
        return None

    async def run(self, indexes: list[int], timeout_s: float) -> list[float | None]:
        scores = [await self.pin(i, n) for n, i in enumerate(indexes)]
        tasks = []
        for index, score in zip(indexes, scores, strict=True):
            tasks.append(asyncio.create_task(self.one(index, score, timeout_s)))
            await asyncio.sleep(REFRESH_GAP_S)
        return await asyncio.gather(*tasks)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(prefix: str, latencies: list[float | None], timeout_s: float) -> dict[str, float]:
    # A refresh not seen within the timeout counts as the timeout: the figure is a lower bound.
    values = [timeout_s * 1000 if v is None else v for v in latencies]
    return {
        f"{prefix}_p50_ms": statistics.median(values),
        f"{prefix}_p99_ms": percentile(values, 0.99),
        f"{prefix}_max_ms": max(values),
        f"{prefix}_n": len(values),
        f"{prefix}_timed_out": sum(v is None for v in latencies),
    }


async def scenario(stack: Stack, size: str, min_queued: int | None) -> dict[str, float]:
    spec = SIZES[size]
    players = spec["players"]
    results: dict[str, float] = {"stack_players": players}
    started = time.perf_counter()
    await track_players(stack.env["NATS_URL"], players)
    results["track_publish_s"] = time.perf_counter() - started
    for name in ("projector", "fetcher", "api"):
        stack.start_service(name)
    database_url = stack.env["DATABASE_URL"]

    async def all_tracked() -> bool:
        return await tracked_in_db(database_url) >= players

    await wait_until("projector applied PlayerTracked", all_tracked, 900, stack)
    results["projector_track_s"] = time.perf_counter() - started
    api_base = f"http://127.0.0.1:{stack.env['API_PORT']}"
    await wait_until("api ready", lambda: ready(f"{api_base}/health/ready"), 60, stack)
    for name in ("fetcher", "projector"):
        port = stack.metrics_ports[name]
        await wait_until(
            f"{name} ready", lambda p=port: ready(f"http://127.0.0.1:{p}/ready"), 60, stack
        )

    async with (
        httpx.AsyncClient(base_url=api_base, timeout=30) as api,
        httpx.AsyncClient(base_url=stack.env["OSRS_HISCORES_URL"], timeout=30) as sim,
    ):
        token = await api.post("/v1/auth/token", json={"username": USER, "password": PASSWORD})
        token.raise_for_status()
        api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        freshness = Freshness(stack, api, sim)
        n = spec["refreshes"]
        # Distinct players, spread over the population (each has its own cooldown).
        step = max(1, players // (3 * n))
        idle_players = [1 + k * step for k in range(n)]
        loaded_players = [2 + k * step for k in range(n)]
        idle = await freshness.run(idle_players, spec["timeout_s"])
        results |= summarise("freshness_idle", idle, spec["timeout_s"])

        if min_queued is None:
            stack.start_service("scheduler")
        else:
            code = f"import services.scheduler.app as a; a.MIN_QUEUED = {min_queued}; a.main()"
            stack.spawn("scheduler", ["-c", code])
        scheduler_log = stack.folder / "scheduler.log"

        async def replayed() -> bool:
            return "scheduler_ready" in scheduler_log.read_text(errors="replace")

        replay_started = time.perf_counter()
        await wait_until("scheduler replayed", replayed, 600, stack)
        results["scheduler_replay_s"] = time.perf_counter() - replay_started

        async def busy() -> bool:
            return await fetched_in_db(database_url) >= 2 * n + min(players // 20, 500)

        await wait_until("fetcher busy with scheduled fetches", busy, 120, stack, every_s=0.2)
        fetched, at = await fetched_in_db(database_url), time.perf_counter()
        watched = {**stack.procs, "nats": stack.nats.proc}
        cpu_before = {name: cpu_s(proc.pid) for name, proc in watched.items()}
        results["owed_fetches_at_refresh"] = players - fetched
        results["cmd_queued_at_refresh"] = await cmd_backlog(stack.env["NATS_URL"])
        loaded = await freshness.run(loaded_players, spec["timeout_s"])
        results |= summarise("freshness", loaded, spec["timeout_s"])
        took = time.perf_counter() - at
        results["stack_fetch_per_s"] = (await fetched_in_db(database_url) - fetched) / took
        for name, proc in watched.items():  # share of one core while loaded
            results[f"cpu_share_{name}"] = (cpu_s(proc.pid) - cpu_before[name]) / took
        results["cmd_queued_after_refresh"] = await cmd_backlog(stack.env["NATS_URL"])

    await asyncio.sleep(spec["settle_s"])
    stack.check_alive()
    for name, proc in stack.procs.items():
        status = proc_status(proc.pid)
        results[f"rss_mb_{name}"] = status["VmRSS"]
        results[f"rss_peak_mb_{name}"] = status["VmHWM"]
    results["cmd_backlog_at_rss"] = await cmd_backlog(stack.env["NATS_URL"])
    return results


def measure(folder: Path, size: str, *, min_queued: int | None = None) -> dict[str, float]:
    """Run the stack in `folder` at `size` ("quick" or "full") and return the figures;
    `min_queued` replaces the scheduler's MIN_QUEUED (UNPACED: no limit on OSRS_CMD, as
    before the scheduler paced itself)."""
    results = {f"rss_import_mb_{name}": import_rss_mb(module) for name, module in IMPORTS.items()}
    stack = Stack(folder)
    started = time.perf_counter()
    try:
        stack.start_servers(SIZES[size]["players"])
        results |= asyncio.run(scenario(stack, size, min_queued))
    finally:
        stack.stop()
    results["stack_s"] = time.perf_counter() - started
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="100k tracked players")
    parser.add_argument("--keep", action="store_true", help="keep the folder (logs) and say where")
    parser.add_argument(
        "--unpaced", action="store_true", help="the scheduler without its OSRS_CMD limit"
    )
    parser.add_argument("--min-queued", type=int, help="the scheduler's MIN_QUEUED instead")
    args = parser.parse_args()
    size = "full" if args.full else "quick"
    folder = Path(tempfile.mkdtemp(prefix="osrs-stack-"))
    try:
        results = measure(folder, size, min_queued=UNPACED if args.unpaced else args.min_queued)
    finally:
        if args.keep:
            print(f"logs in {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    width = max(map(len, results))
    for key, value in results.items():
        ratio = ""
        if key in ROWS and ROWS[key][1] and results.get(ROWS[key][1]):
            ratio = f"  ({value / results[ROWS[key][1]]:.2f}x {ROWS[key][1]})"
        print(f"{key:<{width}}  {value:10.2f}{ratio}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
