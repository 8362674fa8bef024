"""Issue 8's API figures: p99 latency at 8 connections and requests/s at 64, against the real
API process (`python -m services.api`, uvicorn with uvloop and httptools) on a database holding
`players` players with a year of history as the projector stores it.

    .venv/bin/python bench/api_load.py            # quick: 2,000 players x 60 days, ~1 minute
    .venv/bin/python bench/api_load.py --full     # full: 10,000 players x 365 days

The load generator is wrk when it is on PATH (a Lua script rotates the paths and sets the
bearer token), else (or with OSRS_BENCH_LOADGEN=python) a small asyncio client in a subprocess
of its own; `loadgen_is_wrk` says which ran. Both run on the same cores as the API: their CPU
time is reported next to the API's.

The history is made from the simulator (sim/), not through the projector (that would take an
hour for 2.5M events): the real simulator state of every player every ANCHOR_DAYS days, days in
between interpolated, one observation a day for active players and a single one for idle
players (their payload never changes, so the fetcher stores nothing more), packed with
shared.packed as the projector packs them, plus the players, latest_values, fetch_status and
achievements rows the projector derives from the latest observation."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.local import LocalNats, LocalPostgres, bench_database, free_port, wait_for_port  # noqa: E402
from shared import milestones, xp  # noqa: E402
from shared.metrics import KNOWN_METRICS, metric_key  # noqa: E402
from shared.packed import pack  # noqa: E402
from sim.population import Population  # noqa: E402

SIZES = {
    "quick": {"players": 2_000, "days": 60, "seconds": 2.0, "rounds": 3},
    "full": {"players": 10_000, "days": 365, "seconds": 6.0, "rounds": 3},
}
ANCHOR_DAYS = 28  # real simulator states this far apart; the days between are interpolated
BENCH_DB = "osrs_api_bench"
GAINS_PERIOD = "week"
# The board everybody opens first: the current top of a metric (the gains board needs a scan of
# the players changed in the period; see bench/api_load.md).
BOARD_METRICS = ("overall", "attack", "slayer", "woodcutting", "zulrah", "vorkath")
CLK = os.sysconf("SC_CLK_TCK")

# key: (bar as text, the baseline key the ratio is taken to, what limits the figure)
ROWS: dict[str, tuple[str, str | None, str]] = {
    "api_player_p99_ms": (
        "<= 25",
        "api_trivial_p99_ms",
        "GET /v1/players/{name}, names rotating over all players, 8 connections: one API "
        "process (one event loop); the token check's query plus the player query",
    ),
    "api_gains_p99_ms": (
        "<= 25",
        "api_trivial_p99_ms",
        f"GET /v1/players/{{name}}/gains?period={GAINS_PERIOD}, names rotating, 8 connections: "
        "two observation look-ups by primary key, then ~116 metrics diffed in Python",
    ),
    "api_leaderboard_p99_ms": (
        "<= 100",
        "api_trivial_p99_ms",
        "GET /v1/leaderboards/current?metric=..., metrics rotating, 8 connections: an index "
        "range of latest_values_board_idx joined to players, 21 rows",
    ),
    "api_player_rps": (
        "",
        "api_trivial_rps",
        "GET /v1/players/{name} at 64 connections: the API process's CPU (one core at most)",
    ),
    "api_player_ratio_to_trivial": (
        ">= 0.4",
        None,
        "api_player_rps / api_trivial_rps at 64 connections, same server: the median of the "
        "rounds' ratios (each player run right after its trivial run)",
    ),
    "api_trivial_rps": (
        "baseline",
        None,
        "GET /v1/auth/me at 64 connections: JWT check + one user/revocation query, no read model",
    ),
    "api_trivial_p99_ms": (
        "baseline",
        None,
        "GET /v1/auth/me at 8 connections",
    ),
    "api_cpu_share_player_64c": (
        "",
        None,
        "API process CPU seconds / wall seconds during the 64-connection player run (1.0 = one "
        "core: the most one process can use)",
    ),
    "loadgen_cpu_share_player_64c": (
        "",
        None,
        "load generator CPU seconds / wall seconds in the same run (of the machine's 2 cores)",
    ),
    "postgres_cpu_share_player_64c": (
        "",
        None,
        "Postgres server processes' CPU seconds / wall seconds in the same run (local cluster "
        "only; 0 with DATABASE_URL)",
    ),
    "machine_load_1m_before": (
        "",
        None,
        "the machine's 1-minute load average when the runs began (2 cores): other people's "
        "work on the same cores, which the p99s feel first",
    ),
    "api_bench_players": ("", None, "players in the database"),
    "api_bench_observations": ("", None, "observations in the database"),
    "api_bench_database_mb": ("", None, "pg_database_size after VACUUM ANALYZE"),
    "loadgen_is_wrk": ("", None, "1: wrk ran; 0: the Python asyncio client (no wrk on PATH)"),
}


# --- the history ------------------------------------------------------------------------------


def _entries(state, ids: dict[str, int]) -> tuple[dict[int, tuple[int, int]], int, dict]:
    """The kept entries of a simulator state as the projector keeps them (metric id -> (rank,
    value); plainly unranked entries left out), Overall's level, and the skill levels."""
    entries: dict[int, tuple[int, int]] = {}
    levels = {}
    total_level = 0
    for s in state.skills:
        key = metric_key(s.name)
        levels[key] = s.level
        if key == "overall":
            total_level = s.level
        if not (s.rank == -1 and s.level == 1 and s.xp == -1):
            entries[ids[key]] = (s.rank, s.xp)
    for a in state.activities:
        if not (a.rank == -1 and a.score == -1):
            entries[ids[metric_key(a.name)]] = (a.rank, a.score)
    return entries, total_level, levels


def _between(a: dict, b: dict, frac: float) -> dict[int, tuple[int, int]]:
    out = {}
    for m, (rb, vb) in b.items():
        ra, va = a.get(m, (rb, vb))
        rank = rb if ra < 0 or rb < 0 else round(ra + (rb - ra) * frac)
        value = vb if va < 0 else va + int((vb - va) * frac)
        out[m] = (rank, value)
    return out


def player_history(pop: Population, index: int, days: int, end: datetime, ids: dict[str, int]):
    """(player row, observation rows, latest entries, levels) of one player."""
    player = pop.player(index)
    offset = index * 7919 % 86_400
    sim_start = pop.epoch + 10 * 86_400 + offset
    first_at = end - timedelta(days=days - 1, seconds=offset)
    mode = player.account_type.value
    anchors = [0] if not player.active else [*range(0, days - 1, ANCHOR_DAYS), days - 1]
    states = {}
    for day in anchors:
        state = pop.truth(player, sim_start + day * 86_400)
        states[day] = _entries(state, ids)
    rows = []
    for a, b in zip(anchors, anchors[1:] + [None], strict=True):
        ea, ta, _ = states[a]
        rows.append((index + 1, first_at + timedelta(days=a), mode, ta, pack_entries(ea)))
        if b is None:
            break
        eb, tb, _ = states[b]
        for day in range(a + 1, b):
            frac = (day - a) / (b - a)
            entries = _between(ea, eb, frac)
            total = round(ta + (tb - ta) * frac)
            rows.append(
                (index + 1, first_at + timedelta(days=day), mode, total, pack_entries(entries))
            )
    latest, total_level, levels = states[anchors[-1]]
    overall = latest.get(ids["overall"], (-1, -1))[1]
    player_row = (
        index + 1,
        player.key,
        player.name,
        mode,
        first_at,
        rows[-1][1],
        overall if overall >= 0 else None,
        total_level,
        xp.combat_level(levels),
    )
    return player_row, rows, latest, total_level, first_at


def pack_entries(entries: dict[int, tuple[int, int]]) -> bytes:
    return pack((m, r, v) for m, (r, v) in entries.items())


def load_history(database_url: str, players: int, days: int) -> dict[str, float]:
    """Fill the read models; returns the counts and the seconds it took."""
    started = time.perf_counter()
    pop = Population(players, seed=1, tick_s=3600)
    end = datetime.now(UTC) - timedelta(minutes=10)
    observations = 0
    with psycopg.connect(database_url) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO metrics (key, name, kind) VALUES (%s, %s, %s) "
                "ON CONFLICT (key) DO NOTHING",
                [(m.key, m.name, m.kind.value) for m in KNOWN_METRICS],
            )
        rows = conn.execute("SELECT key, id, kind FROM metrics").fetchall()
        ids = {key: id_ for key, id_, _ in rows}
        kinds = {id_: (key, kind) for key, id_, kind in rows}
        chunk = 500
        for start in range(0, players, chunk):
            histories = [
                player_history(pop, i, days, end, ids)
                for i in range(start, min(players, start + chunk))
            ]
            with conn.cursor() as cur:
                with cur.copy(
                    "COPY players (id, key, display_name, mode, tracked, interval_s, tracked_at,"
                    " tracked_by, last_changed_at, overall_xp, total_level, combat_level)"
                    " FROM STDIN"
                ) as copy:
                    for (pid, key, name, mode, tracked_at, changed, oxp, tl, cl), *_ in histories:
                        copy.write_row(
                            (pid, key, name, mode, True, 3600, tracked_at, "bench", changed)
                            + (oxp, tl, cl)
                        )
                with cur.copy(
                    "COPY fetch_status (player_key, mode, fetched_at, outcome, http_status,"
                    " detail, not_found_streak) FROM STDIN"
                ) as copy:
                    for (_, key, _, mode, *_), *_ in histories:
                        copy.write_row((key, mode, end, "unchanged", 200, "", 0))
                with cur.copy(
                    "COPY observations (player_id, observed_at, mode, total_level, data) FROM STDIN"
                ) as copy:
                    for _, obs, *_ in histories:
                        observations += len(obs)
                        for row in obs:
                            copy.write_row(row)
                with cur.copy(
                    "COPY latest_values (player_id, metric_id, value) FROM STDIN"
                ) as copy:
                    for (pid, *_), _, latest, _, _ in histories:
                        for m, (_, value) in latest.items():
                            if value >= 0:
                                copy.write_row((pid, m, value))
                with cur.copy(
                    "COPY achievements (player_id, key, kind, metric, threshold, observed_at,"
                    " previous_at, before_tracking) FROM STDIN"
                ) as copy:
                    for (pid, *_), _, latest, total_level, first_at in histories:
                        skills, activities = {}, {}
                        for m, (_, value) in latest.items():
                            key, kind = kinds[m]
                            (skills if kind == "skill" else activities)[key] = value
                        for ms in milestones.reached(skills, activities, total_level):
                            copy.write_row(
                                (pid, ms.key, ms.kind, ms.metric, ms.threshold, first_at)
                                + (None, True)
                            )
            conn.commit()
        conn.execute("SELECT setval(pg_get_serial_sequence('players', 'id'), %s)", (players,))
        conn.commit()
    loaded_s = time.perf_counter() - started
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {
        "api_bench_players": players,
        "api_bench_observations": observations,
        "api_bench_load_s": round(loaded_s, 1),
        "api_bench_database_mb": round(size / 2**20, 1),
    }


# --- the API process --------------------------------------------------------------------------


class Api:
    """`python -m services.api` as deployed, on a free port, with an admin to log in as."""

    def __init__(self, folder: Path, database_url: str, nats_url: str) -> None:
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.log = folder / "api.log"
        self.env = os.environ | {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "OSRS_JWT_SECRET": secrets.token_hex(32),
            "OSRS_ADMIN_USERNAME": "bench",
            "OSRS_ADMIN_PASSWORD": self.password,
            "OSRS_ACCESS_TOKEN_TTL": "7200",
            "API_HOST": "127.0.0.1",
            "API_PORT": str(self.port),
            "OSRS_LOG_LEVEL": "WARNING",
            "OSRS_METRICS_PORT": "0",
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> Api:
        out = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.api"],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, 60, self.proc)
        deadline = time.monotonic() + 30
        while self._status("/health/ready") != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API is not ready; see {self.log}")
            time.sleep(0.1)
        return self

    def _status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status
        except OSError:
            return 0

    def token(self) -> str:
        body = json.dumps({"username": "bench", "password": self.password}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/auth/token",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())["access_token"]

    def cpu_s(self) -> float:
        return _proc_cpu_s(self.proc.pid)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK  # utime, stime


def _postgres_cpu_s(postmaster: int | None) -> float:
    """The CPU time of the cluster's postmaster and its live children (the backends)."""
    if postmaster is None:
        return 0.0
    total = _proc_cpu_s(postmaster)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                total += (int(fields[11]) + int(fields[12])) / CLK
    return total


# --- the load generators ------------------------------------------------------------------------

_WRK_SCRIPT = """
local paths = {%(paths)s}
local n = #paths
local made = 0
wrk.headers["Authorization"] = "Bearer %(token)s"
function setup(thread) thread:set("start", made * 7919); made = made + 1 end
function init(args) i = start or 0 end
function request()
  i = i + 1
  return wrk.format("GET", paths[(i * 7919) %% n + 1])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "non_2xx": %%d, "socket_errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uses_wrk() -> bool:
    return os.environ.get("OSRS_BENCH_LOADGEN") != "python" and shutil.which("wrk") is not None


def run_wrk(port: int, paths: list[str], token: str, connections: int, seconds: float, folder):
    script = folder / "bench.lua"
    script.write_text(_WRK_SCRIPT % {"paths": ",".join(map(_lua_string, paths)), "token": token})
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"]
        + ["-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    return {
        "requests": found["requests"],
        "seconds": found["duration_us"] / 1e6,
        "p50_ms": found["p50_us"] / 1e3,
        "p99_ms": found["p99_us"] / 1e3,
        "errors": found["non_2xx"] + found["socket_errors"],
    }


async def exchange(reader, writer, request: bytes) -> int:
    """One HTTP/1.1 request on a kept-alive connection; the answer's status (body read whole)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(head[9:12])


async def _python_load(port, paths, token, connections, seconds) -> dict:
    loop = asyncio.get_running_loop()
    auth = f"Authorization: Bearer {token}"
    latencies: list[float] = []
    errors = 0
    started = loop.time()
    deadline = started + seconds

    async def one(k: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k * 7919
        while loop.time() < deadline:
            i += 1
            path = paths[(i * 7919) % len(paths)]
            t0 = time.perf_counter()
            request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n\r\n".encode()
            status = await exchange(reader, writer, request)
            latencies.append(time.perf_counter() - t0)
            if not 200 <= status < 300:
                errors += 1
        writer.close()

    await asyncio.gather(*(one(k) for k in range(connections)))
    latencies.sort()
    took = loop.time() - started
    return {
        "requests": len(latencies),
        "seconds": took,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
        "errors": errors,
    }


def run_python_client(port, paths, token, connections, seconds, folder):
    job = folder / "client.json"
    job.write_text(json.dumps([port, paths, token, connections, seconds]))
    out = subprocess.run(
        [sys.executable, __file__, "--client", str(job)], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def load(api: Api, postmaster, paths, token, connections, seconds, folder) -> dict:
    """One run: latency, rate, and the CPU the API, the load generator and Postgres took."""
    runner = run_wrk if uses_wrk() else run_python_client
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    api_cpu, pg_cpu, wall = api.cpu_s(), _postgres_cpu_s(postmaster), time.perf_counter()
    result = runner(api.port, paths, token, connections, seconds, folder)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    loadgen = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    result |= {
        "rps": result["requests"] / result["seconds"],
        "api_cpu_share": (api.cpu_s() - api_cpu) / wall,
        "loadgen_cpu_share": loadgen / wall,
        "postgres_cpu_share": (_postgres_cpu_s(postmaster) - pg_cpu) / wall,
    }
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} failed requests on {paths[0]}...: see {api.log}")
    return result


# --- the measurement ------------------------------------------------------------------------------


def _postmaster(local_pg: LocalPostgres | None) -> int | None:
    if local_pg is None:
        return None
    return int((local_pg.data_dir / "postmaster.pid").read_text().split()[0])


def measure(folder: Path, size: str) -> dict[str, float]:
    """Every key of ROWS (and a few more), on servers started here and stopped at the end."""
    spec = SIZES[size]
    folder.mkdir(parents=True, exist_ok=True)
    local_nats = LocalNats(folder / "api-nats", free_port()).start()
    local_pg = api = None
    try:
        database_url, local_pg = bench_database(folder / "api-pg", BENCH_DB)
        results: dict[str, float] = load_history(database_url, spec["players"], spec["days"])
        print(f"loaded {results}", file=sys.stderr, flush=True)
        api = Api(folder, database_url, local_nats.url).start()
        token = api.token()
        postmaster = _postmaster(local_pg)
        keys = [f"sim_{i}" for i in range(1, spec["players"] + 1)]
        routes = {
            "trivial": ["/v1/auth/me"],
            "player": [f"/v1/players/{k}" for k in keys],
            "gains": [f"/v1/players/{k}/gains?period={GAINS_PERIOD}" for k in keys],
            "leaderboard": [f"/v1/leaderboards/current?metric={m}" for m in BOARD_METRICS],
        }
        seconds, rounds = spec["seconds"], spec["rounds"]

        def run(paths, connections, duration):
            return load(api, postmaster, paths, token, connections, duration, folder)

        for paths in routes.values():  # warm: caches, plans, pages
            run(paths, 8, 1.0)
        # Other people's work shares the cores: the runs of every route take turns, and each
        # figure is the median of its rounds, so a burst elsewhere hits one round of each.
        load_before = os.getloadavg()[0]
        runs: dict[tuple[str, int], list[dict]] = {}
        for _ in range(rounds):
            for connections, names in ((8, routes), (64, ("trivial", "player"))):
                for name in names:
                    found = run(routes[name], connections, seconds)
                    runs.setdefault((name, connections), []).append(found)
                    print(f"{name} {connections}c {found}", file=sys.stderr, flush=True)

        def median(name: str, connections: int, what: str) -> float:
            return statistics.median(found[what] for found in runs[name, connections])

        for name in routes:
            results[f"api_{name}_p99_ms"] = round(median(name, 8, "p99_ms"), 2)
            results[f"api_{name}_p50_ms"] = round(median(name, 8, "p50_ms"), 2)
            results[f"api_{name}_rps_8c"] = round(median(name, 8, "rps"), 1)
            results[f"api_cpu_share_{name}_8c"] = round(median(name, 8, "api_cpu_share"), 3)
            results[f"loadgen_cpu_share_{name}_8c"] = round(median(name, 8, "loadgen_cpu_share"), 3)
        for name in ("trivial", "player"):
            results[f"api_{name}_rps"] = round(median(name, 64, "rps"), 1)
            results[f"api_{name}_p99_ms_64c"] = round(median(name, 64, "p99_ms"), 2)
            for what in ("api", "loadgen", "postgres"):
                share = median(name, 64, f"{what}_cpu_share")
                results[f"{what}_cpu_share_{name}_64c"] = round(share, 3)
        results["machine_load_1m_before"] = round(load_before, 2)
        results["machine_load_1m_after"] = round(os.getloadavg()[0], 2)
        # Per round (the player run follows its trivial run at once), then the median.
        ratios = [
            player["rps"] / trivial["rps"]
            for trivial, player in zip(runs["trivial", 64], runs["player", 64], strict=True)
        ]
        results["api_player_ratio_to_trivial"] = round(statistics.median(ratios), 3)
        results["loadgen_is_wrk"] = 1 if uses_wrk() else 0
        return results
    finally:
        if api is not None:
            api.stop()
        local_nats.stop()
        if local_pg is not None:
            local_pg.discard()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="10k players x 365 days")
    ap.add_argument("--client", help=argparse.SUPPRESS)  # the Python load generator's job file
    args = ap.parse_args()
    if args.client:
        port, paths, token, connections, seconds = json.loads(Path(args.client).read_text())
        print(json.dumps(asyncio.run(_python_load(port, paths, token, connections, seconds))))
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="osrs-api-bench-") as folder:
        Path(folder).chmod(0o755)  # as root the cluster runs as `postgres`
        results = measure(Path(folder), "full" if args.full else "quick")
    print(f"loadgen: {'wrk' if results['loadgen_is_wrk'] else 'python asyncio client'}")
    print(f"took {time.monotonic() - started:.0f} s")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
