"""Issue 9's soak: the whole stack at nominal load for `--minutes` (30), every process's memory,
open files and threads and the connection counts sampled every 15 s; after the warm-up they
must stay flat.

    .venv/bin/python bench/soak.py                            # 30 min: bench/soak.md, soak.json
    .venv/bin/python bench/soak.py --minutes 2 --out /tmp     # a trial

bench/stack.py's `Stack` runs nats-server (with its monitoring port), a throw-away Postgres
cluster (DATABASE_URL is ignored: the cluster's processes must be this run's alone), the
simulator (`--tick 10`, `--epoch now`: active players gain between two fetches) and the four
services as processes. The load: 2,000 players tracked at a 60 s interval (~33 fetches/s), an
API client at 4 requests/s over player, gains, snapshots, two boards and the list, and 4 manual
refreshes a minute.

Each sample: per process (its descendants summed: Postgres is the postmaster and its backends)
VmRSS, RssAnon, open fds, threads and established TCP sockets; Postgres connections by
application_name; NATS connections by name and consumers' pending counts (/connz, /jsz); the
simulator's hiscores requests, the observations stored, the stalest player's last fetch.

The verdict leaves out the first sixth (5 min of 30) as warm-up and compares the rest's first
and last thirds (see TOLERANCES). Exit status 1 when a series is not flat, the load did not
hold or a process died."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import psycopg
from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stack import (  # noqa: E402
    PASSWORD,
    USER,
    Stack,
    name_of,
    ready,
    track_players,
    tracked_in_db,
    wait_until,
)
from shared import subjects  # noqa: E402

PLAYERS = 2_000
INTERVAL_S = 60
TICK_S = 10
SAMPLE_S = 15.0
API_PER_S = 4.0
REFRESHES_PER_MIN = 4
MEMORY_MB_PER_H = 5.0  # a memory series is flat below this least-squares slope
COUNT_SLACK = 1.0  # a count is flat when its last third's mean is at most this above the first's
COUNT_SHARE = 0.05  # ... or this share of it, for sums of many (Postgres's fds)
LOAD_SHARE = 0.9  # of players / interval: the fetch rate the judged window must keep
SERVICES = ("sim", "projector", "fetcher", "api", "scheduler", "nats", "postgres")
TOLERANCES = f"""\
- Warm-up: the first sixth of the run (5 min of 30) is sampled but not judged: pools, caches
  and the first fetch of every player settle there. The rest is split in thirds.
- Memory (`rss_mb`, and `anon_mb` for Postgres): flat when the least-squares slope over the
  judged window is at most {MEMORY_MB_PER_H:g} MB/h. That is 120 MB a day, roughly the
  smallest growth 25 minutes tell from noise (the allocator moves a Python process by 1 MB
  arenas, the GC in steps), so a slower leak needs a longer soak. Postgres is judged on
  RssAnon, its processes' private memory: its summed VmRSS counts the shared buffers once per
  backend and grows with every page of the growing tables a backend reads, up to
  shared_buffers, which is no leak; it is shown for information.
- Counts (fds, threads, TCP sockets, processes, connections, pending messages): flat when
  they do not increase: the last third's mean is at most max({COUNT_SLACK:g}, {COUNT_SHARE:.0%}
  of the first third's mean) above the first third's (one more fd is jitter: a pool
  reconnecting, an autovacuum worker), or the last third never exceeds the first third's peak
  (a queue or a pool swinging between bounds). A leak sets new highs: one fd every few
  minutes fails both.
- Load: the judged window must fetch at least {LOAD_SHARE:.0%} of players / interval per
  second, and the API must answer every request 200 (a refresh 202, or 429 in its cooldown)."""


# --- one sample ---------------------------------------------------------------------------------


def children_of() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            kids[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry.name))
    return kids


def with_descendants(pid: int, kids: dict[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(kids.get(found[-1], ()))
    return found


def established_sockets() -> set[str]:
    """The inodes of every established TCP socket on the machine."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01":  # TCP_ESTABLISHED
                inodes.add(fields[9])
    return inodes


def usage(pids: list[int], established: set[str]) -> dict[str, float]:
    """Memory, fds, threads and established TCP sockets of `pids`, summed."""
    total = {"rss_mb": 0.0, "anon_mb": 0.0, "fds": 0, "threads": 0, "tcp": 0, "procs": 0}
    for pid in pids:
        try:
            status = dict(
                line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            )
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except (FileNotFoundError, ProcessLookupError):
            continue  # a backend that ended meanwhile
        total["rss_mb"] += int(status["VmRSS"].split()[0]) / 1024
        total["anon_mb"] += int(status["RssAnon"].split()[0]) / 1024
        total["threads"] += int(status["Threads"])
        total["fds"] += len(links)
        total["tcp"] += sum(link[8:-1] in established for link in links if link[:8] == "socket:[")
        total["procs"] += 1
    return total


class Sampler:
    """Everything one sample reads, through connections it keeps for the whole run."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.database = conninfo_to_dict(stack.env["DATABASE_URL"])["dbname"]
        self.monitor = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{stack.nats.monitor_port}", timeout=10
        )
        self.sim = httpx.AsyncClient(base_url=stack.env["OSRS_HISCORES_URL"], timeout=10)

    async def open(self) -> None:
        self.db = await psycopg.AsyncConnection.connect(
            self.stack.env["DATABASE_URL"], autocommit=True, application_name="osrs-soak"
        )
        self.nats = await nats.connect(self.stack.env["NATS_URL"], name="osrs-soak")

    async def close(self) -> None:
        await self.db.close()
        await self.nats.close()
        await self.monitor.aclose()
        await self.sim.aclose()

    def pids(self) -> dict[str, int]:
        found = {name: proc.pid for name, proc in self.stack.procs.items()}
        found["nats"] = self.stack.nats.proc.pid
        postmaster = self.stack.postgres.data_dir / "postmaster.pid"
        found["postgres"] = int(postmaster.read_text().split()[0])
        return found

    async def sample(self, t: float) -> dict[str, float]:
        kids, established = children_of(), established_sockets()
        values: dict[str, float] = {"t": t, "loadavg_1m": os.getloadavg()[0]}
        for name, pid in self.pids().items():
            for key, value in usage(with_descendants(pid, kids), established).items():
                values[f"{name}.{key}"] = value
        rows = await self.db.execute(
            "SELECT coalesce(nullif(application_name, ''), '(none)'), count(*)"
            " FROM pg_stat_activity WHERE datname = %s GROUP BY 1",
            (self.database,),
        )
        for app, count in await rows.fetchall():
            values[f"pg_conns.{app}"] = count
        connz = (await self.monitor.get("/connz", params={"limit": 1024})).json()
        values["nats_conns.total"] = connz["num_connections"]
        for name, count in Counter(c.get("name") or "-" for c in connz["connections"]).items():
            values[f"nats_conns.{name}"] = count
        varz = (await self.monitor.get("/varz")).json()
        values["nats.subscriptions"] = varz["subscriptions"]
        values["nats.slow_consumers"] = varz["slow_consumers"]
        jsz = (await self.monitor.get("/jsz", params={"consumers": "true"})).json()
        for account in jsz.get("account_details", []):
            for stream in account.get("stream_detail", []):
                for consumer in stream.get("consumer_detail") or []:
                    pending = consumer["num_pending"] + consumer["num_ack_pending"]
                    values[f"pending.{stream['name']}/{consumer['name']}"] = pending
        values |= await self.progress()
        return values

    async def progress(self) -> dict[str, float]:
        sim = (await self.sim.get("/_sim/stats")).json()
        rows = await self.db.execute(
            "SELECT (SELECT count(*) FROM observations),"
            " (SELECT extract(epoch FROM now() - min(fetched_at)) FROM fetch_status)"
        )
        observations, stalest = await rows.fetchone()
        info = await self.nats.jetstream().stream_info(subjects.CMD_STREAM)
        return {
            "sim.requests": sim["requests"],
            "db.observations": observations,
            "db.stalest_fetch_s": float(stalest or 0),
            "cmd.backlog": info.state.messages,
        }


# --- the load -----------------------------------------------------------------------------------


class ApiLoad:
    """A light API client: reads spread over the endpoints, and a few manual refreshes."""

    EXPECTED = {"refresh": (202, 429)}

    def __init__(self, base_url: str, players: int) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=30)
        self.players = players
        self.calls: list[tuple[float, str, int, float]] = []  # (t, kind, status, ms)
        self.unexpected: list[dict] = []  # the first few, with the answer
        self.started = time.monotonic()

    async def login(self) -> None:
        answer = await self.client.post(
            "/v1/auth/token", json={"username": USER, "password": PASSWORD}
        )
        answer.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    async def call(self, kind: str, method: str, path: str, **params: str | int) -> None:
        began = time.monotonic()
        try:
            answer = await self.client.request(method, path, params=params)
            if answer.status_code == 401:  # the access token expired (15 min)
                await self.login()
                answer = await self.client.request(method, path, params=params)
            status, said = answer.status_code, answer.text[:200]
        except httpx.HTTPError as exc:
            status, said = 0, repr(exc)
        ms = (time.monotonic() - began) * 1000
        self.calls.append((began - self.started, kind, status, ms))
        if status not in self.EXPECTED.get(kind, (200,)) and len(self.unexpected) < 20:
            at = round(began - self.started, 1)
            self.unexpected.append({"t": at, "path": path, "status": status, "answer": said})

    def player(self) -> str:
        return name_of(random.randint(1, self.players))

    async def browse(self, per_s: float) -> None:
        kinds = itertools.cycle(("player", "gains", "snapshots", "board", "gainers", "list"))
        while True:
            kind, name = next(kinds), self.player()
            if kind == "player":
                await self.call(kind, "GET", f"/v1/players/{name}")
            elif kind == "gains":
                await self.call(kind, "GET", f"/v1/players/{name}/gains", period="day")
            elif kind == "snapshots":
                await self.call(kind, "GET", f"/v1/players/{name}/snapshots", limit=20)
            elif kind == "board":
                await self.call(kind, "GET", "/v1/leaderboards/current", metric="overall")
            elif kind == "gainers":
                params = {"metric": "overall", "period": "day"}
                await self.call(kind, "GET", "/v1/leaderboards/gains", **params)
            else:
                await self.call(kind, "GET", "/v1/players", sort="overall_xp", limit=50)
            await asyncio.sleep(1 / per_s)

    async def refresh(self, per_min: float) -> None:
        while True:
            await self.call("refresh", "POST", f"/v1/players/{self.player()}/refresh")
            await asyncio.sleep(60 / per_min)

    def summary(self, warmup_s: float) -> dict[str, dict[str, float]]:
        by_kind: dict[str, list[tuple[float, int, float]]] = defaultdict(list)
        for t, kind, status, ms in self.calls:
            by_kind[kind].append((t, status, ms))
        found = {}
        for kind, calls in sorted(by_kind.items()):
            ok = self.EXPECTED.get(kind, (200,))
            judged = [ms for t, _, ms in calls if t >= warmup_s] or [0.0]
            found[kind] = {
                "n": len(calls),
                "unexpected": sum(status not in ok for _, status, _ in calls),
                "statuses": dict(Counter(str(status) for _, status, _ in calls)),
                "p50_ms": statistics.median(judged),
                "p99_ms": sorted(judged)[round(0.99 * (len(judged) - 1))],
            }
        return found


# --- the verdict --------------------------------------------------------------------------------


def kind_of(series: str) -> str:
    """memory, count or info: how a series is judged."""
    if series.endswith(".anon_mb"):
        return "memory" if series.startswith("postgres.") else "info"
    if series.endswith(".rss_mb"):
        return "info" if series.startswith("postgres.") else "memory"
    if series.split(".")[-1] in ("fds", "threads", "tcp", "procs"):
        return "count"
    if series.startswith(("pg_conns.", "nats_conns.", "pending.", "cmd.", "nats.")):
        return "count"
    return "info"


def judge(points: list[tuple[float, float]], kind: str) -> dict[str, float | str]:
    """min, max, the thirds' means, the slope per hour and flat or not, over `points`."""
    times, values = [t for t, _ in points], [v for _, v in points]
    third = max(1, len(values) // 3)
    first, last = statistics.fmean(values[:third]), statistics.fmean(values[-third:])
    slope = 0.0
    if len(set(times)) > 1 and len(set(values)) > 1:
        slope = statistics.linear_regression(times, values).slope * 3600
    row: dict[str, float | str] = {
        "min": min(values), "max": max(values), "first": first, "last": last, "slope_h": slope,
    }  # fmt: skip
    if kind == "memory":
        row["verdict"] = "flat" if slope <= MEMORY_MB_PER_H else "GROWS"
    elif kind == "count":
        # Not increasing: the last third no higher on average, or never above the first's peak
        # (a queue or a pool that swings between bounds).
        ok = last - first <= max(COUNT_SLACK, COUNT_SHARE * first)
        ok = ok or max(values[-third:]) <= max(values[:third])
        row["verdict"] = "flat" if ok else "GROWS"
    else:
        row["verdict"] = "-"
    return row


def verdict(samples: list[dict[str, float]], warmup_s: float) -> dict[str, dict]:
    judged = [s for s in samples if s["t"] >= warmup_s]
    names = sorted({key for s in judged for key in s} - {"t"})
    rows = {}
    for name in names:
        # A connection name absent from a sample had none then.
        points = [(s["t"], s.get(name, 0.0)) for s in judged]
        if name in ("sim.requests", "db.observations"):  # cumulative: judge the rate
            points = [
                (t1, (v1 - v0) / (t1 - t0))
                for (t0, v0), (t1, v1) in itertools.pairwise(points)
                if t1 > t0
            ]
            name = name + "_per_s"
        if points:
            rows[name] = {"kind": kind_of(name), **judge(points, kind_of(name))}
    return rows


def load_held(rows: dict[str, dict], api: dict[str, dict], players: int, interval: int) -> list:
    """What says the load was not real, if anything."""
    problems = []
    rate = rows.get("sim.requests_per_s", {})
    nominal = players / interval
    for third in ("first", "last"):
        if rate.get(third, 0) < LOAD_SHARE * nominal:
            problems.append(f"fetches/s in the {third} third {rate.get(third, 0):.1f} < nominal")
    for kind, figures in api.items():
        if figures["unexpected"]:
            problems.append(f"api {kind}: {figures['unexpected']} unexpected answers")
    return problems


# --- the run ------------------------------------------------------------------------------------


async def soak(stack: Stack, args: argparse.Namespace) -> tuple[list, ApiLoad, str | None]:
    await track_players(stack.env["NATS_URL"], args.players, interval_s=args.interval)
    for name in ("projector", "fetcher", "api", "scheduler"):
        stack.start_service(name)
    api_base = f"http://127.0.0.1:{stack.env['API_PORT']}"
    await wait_until("api ready", lambda: ready(f"{api_base}/health/ready"), 120, stack)

    async def all_tracked() -> bool:
        return await tracked_in_db(stack.env["DATABASE_URL"]) >= args.players

    await wait_until("projector applied PlayerTracked", all_tracked, 120, stack)
    sampler, load = Sampler(stack), ApiLoad(api_base, args.players)
    await sampler.open()
    await load.login()
    tasks = [
        asyncio.create_task(load.browse(args.api_per_s)),
        asyncio.create_task(load.refresh(args.refreshes_per_min)),
    ]
    samples, died = [], None
    began = time.monotonic()
    load.started = began
    try:
        for k in itertools.count():
            now = time.monotonic() - began
            try:
                stack.check_alive()
            except RuntimeError as exc:
                died = str(exc)
                break
            samples.append(await sampler.sample(round(now, 1)))
            line = {key: samples[-1][key] for key in ("t", "cmd.backlog", "db.observations")}
            print(json.dumps(line), file=sys.stderr, flush=True)
            if now >= args.minutes * 60:
                break
            await asyncio.sleep(max(0.0, began + (k + 1) * SAMPLE_S - time.monotonic()))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sampler.close()
        await load.client.aclose()
    return samples, load, died


def report(args, samples, rows, api, problems, died, started_at) -> str:
    flat = all(r["verdict"] != "GROWS" for r in rows.values())
    ok = flat and not problems and not died
    lines = [
        "# Soak: the whole stack at nominal load",
        "",
        f"Run {started_at:%Y-%m-%d %H:%M} UTC, `.venv/bin/python bench/soak.py --minutes "
        f"{args.minutes:g}`: {args.players:,} players every {args.interval} s "
        f"({args.players / args.interval:.1f} fetches/s), simulator tick {args.tick} s, "
        f"API {args.api_per_s:g} requests/s, {args.refreshes_per_min:g} refreshes/min; "
        f"{len(samples)} samples every {SAMPLE_S:g} s, the first {args.warmup_s:.0f} s not "
        f"judged. {os.cpu_count()} cores, shared with other work (load average column).",
        "",
        f"**Verdict: {'flat' if ok else 'NOT flat'}.**"
        + (f" Process died: {died.splitlines()[0]}" if died else "")
        + "".join(f" {p}." for p in problems)
        + "".join(f" `{n}` grows." for n, r in rows.items() if r["verdict"] == "GROWS"),
        "",
        "| series | judged as | min | max | first third | last third | slope /h | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in rows.items():
        figures = " | ".join(f"{r[k]:,.1f}" for k in ("min", "max", "first", "last", "slope_h"))
        lines.append(f"| `{name}` | {r['kind']} | {figures} | {r['verdict']} |")
    lines += [
        "",
        "API client (latency after the warm-up, from this script on the same machine):",
        "",
        "| request | n | unexpected | answers | p50 ms | p99 ms |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for kind, f in api.items():
        answers = ", ".join(f"{s}: {n}" for s, n in sorted(f["statuses"].items()))
        lines.append(
            f"| {kind} | {f['n']} | {f['unexpected']} | {answers} "
            f"| {f['p50_ms']:.1f} | {f['p99_ms']:.1f} |"
        )
    lines += ["", "How a series is judged:", "", TOLERANCES, ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--players", type=int, default=PLAYERS)
    parser.add_argument("--interval", type=int, default=INTERVAL_S, help="s between fetches")
    parser.add_argument("--tick", type=int, default=TICK_S, help="the simulator's tick (s)")
    parser.add_argument("--api-per-s", type=float, default=API_PER_S)
    parser.add_argument("--refreshes-per-min", type=float, default=REFRESHES_PER_MIN)
    parser.add_argument("--out", type=Path, default=ROOT / "bench", help="soak.md, soak.json")
    parser.add_argument("--keep", action="store_true", help="keep the logs and say where")
    args = parser.parse_args()
    args.warmup_s = args.minutes * 60 / 6
    os.environ.pop("DATABASE_URL", None)  # a cluster of our own: its processes are measured
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the stack on SIGTERM too
    started_at = datetime.now(UTC)
    folder = Path(tempfile.mkdtemp(prefix="osrs-soak-"))
    stack = Stack(folder)
    try:
        stack.start_servers(args.players, ("--tick", str(args.tick)), nats_monitor=True)
        samples, load, died = asyncio.run(soak(stack, args))
    finally:
        stack.stop()
        if args.keep:
            print(f"logs in {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    rows = verdict(samples, args.warmup_s)
    api = load.summary(args.warmup_s)
    problems = load_held(rows, api, args.players, args.interval)
    text = report(args, samples, rows, api, problems, died, started_at)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.md").write_text(text)
    raw = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
        "api": api,
        "unexpected_answers": load.unexpected,
        "samples": samples,
    }
    (args.out / "soak.json").write_text(json.dumps(raw, indent=0) + "\n")
    flat = all(r["verdict"] != "GROWS" for r in rows.values())
    return 0 if flat and not problems and not died else 1


if __name__ == "__main__":
    sys.exit(main())
