"""Issue 9's API overload figures: the real API process under twice its capacity answers quickly
(200 or 503 + Retry-After) instead of timing out, and serves normally once the burst is over.

    .venv/bin/python bench/api_overload.py              # ~2 minutes; writes nothing
    .venv/bin/python bench/api_overload.py --write      # the same, and bench/api_overload.md

For each configuration, on one API process (`python -m services.api`, as deployed):

1. capacity: closed loop, 64 keep-alive connections, GET /v1/players/{name} with the names
   rotating, for a few seconds: the requests/s it serves (`capacity_rps`);
2. overload: open loop at twice the capacity (requests are sent on schedule whether or not
   earlier ones were answered, from up to CONNECTIONS connections), with a client timeout;
3. recovery: right after, open loop at half the capacity.

Both configurations are driven at the rates of the first one's capacity, so they are compared
under the same load.

An open loop, because that is what overload is: clients that arrive at their own rate. Closed-loop
clients at twice the concurrency only wait twice as long; they slow themselves down.

Configurations: `protected` (the defaults of shared/settings.py), `unprotected` (no in-flight
limit and psycopg_pool's default 30 s wait for a connection: the API before issue 9), and the
defaults with a shorter and a longer queue (`OSRS_API_MAX_QUEUED` 64 and 1024).

The load generator is a small asyncio client (uvloop) in a subprocess of its own, on the same two
cores as the API and Postgres; it reports how late it sent (`send_lag_p99_ms`), so a client that
could not keep up is seen."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from api_load import Api, exchange, load_history  # noqa: E402

from services.local import LocalNats, bench_database, free_port  # noqa: E402
from shared.settings import Settings  # noqa: E402

BENCH_DB = "osrs_api_overload_bench"
ADMIN_PASSWORD = secrets.token_urlsafe(16)
PLAYERS, DAYS = 300, 30
CAPACITY_CONNECTIONS = 64
CONNECTIONS = 512  # the open loop's most connections at once
CLIENT_TIMEOUT_S = 5.0
CAPACITY_S, OVERLOAD_S, RECOVERY_S = 4.0, 10.0, 5.0
OVERLOAD_FACTOR, RECOVERY_FACTOR = 2.0, 0.5
CONFIGS = {
    "protected": {},
    "unprotected": {"OSRS_API_MAX_INFLIGHT": "1000000", "OSRS_API_POOL_TIMEOUT_S": "30"},
    # Why the queue's default is what it is: shorter and longer.
    "queue 64": {"OSRS_API_MAX_QUEUED": "64"},
    "queue 1024": {"OSRS_API_MAX_QUEUED": "1024"},
}


# --- the load generator (runs in its own process) ----------------------------------------------


async def drive(port, paths, token, rate, seconds, connections, timeout_s) -> dict:
    """Open loop at `rate` requests/s (None: closed loop, each connection sends at once)."""
    loop = asyncio.get_running_loop()
    auth = f"Authorization: Bearer {token}"
    requests = [f"GET {p} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n\r\n".encode() for p in paths]
    latencies: dict[int, list[float]] = {}
    lags: list[float] = []
    not_ok_by_second: list[list[int]] = [[0, 0] for _ in range(int(seconds) + 1)]  # [all, not 200]
    timeouts = errors = 0
    order = itertools.count()

    async def connect():
        return await asyncio.open_connection("127.0.0.1", port)

    opened = await asyncio.gather(*(connect() for _ in range(connections)))
    started = loop.time()
    ends = started + seconds

    def tally(due: float, ok: bool) -> None:
        second = not_ok_by_second[int(due - started)]
        second[0] += 1
        second[1] += not ok

    async def one_connection(reader, writer) -> None:
        nonlocal timeouts, errors
        while True:
            i = next(order)
            due = started + i / rate if rate else max(started, loop.time())
            if due >= ends:
                break
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            lags.append(loop.time() - due)
            # The user's clock runs from when the request was due: waiting for a free
            # connection counts, and one that comes too late is not sent at all.
            try:
                async with asyncio.timeout_at(due + timeout_s):
                    status = await exchange(reader, writer, requests[i * 7919 % len(requests)])
                latencies.setdefault(status, []).append(loop.time() - due)
                tally(due, status == 200)
                continue
            except TimeoutError:
                timeouts += 1
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
            tally(due, False)
            writer.close()  # a connection in an unknown state: a new one
            reader, writer = await connect()
        writer.close()

    await asyncio.gather(*(one_connection(r, w) for r, w in opened))
    took = max(loop.time(), ends) - started
    return _summary(latencies, lags, timeouts, errors, took, seconds) | {
        "not_ok_share_by_second": [round(bad / n, 3) for n, bad in not_ok_by_second if n]
    }


def _pct(values: list[float], q: float) -> float:
    return round(values[min(len(values) - 1, int(len(values) * q))] * 1e3, 1) if values else 0.0


def _summary(latencies, lags, timeouts, errors, took, seconds) -> dict:
    every = sorted(x for values in latencies.values() for x in values)
    answered = len(every)
    total = answered + timeouts + errors
    ok = sorted(latencies.get(200, []))
    lags.sort()
    return {
        "requests": total,
        "sent_rps": round(total / seconds, 1),
        "answered_rps": round(answered / took, 1),
        "ok_rps": round(len(ok) / took, 1),
        "p50_ms": _pct(every, 0.5),
        "p99_ms": _pct(every, 0.99),
        "max_ms": round(every[-1] * 1e3, 1) if every else 0.0,
        "ok_p99_ms": _pct(ok, 0.99),
        "share": {str(s): round(len(v) / total, 4) for s, v in sorted(latencies.items())},
        "timeouts": timeouts,
        "errors": errors,
        "send_lag_p99_ms": _pct(lags, 0.99),
    }


def _client_main(job: Path) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    args = json.loads(job.read_text())
    print(json.dumps(asyncio.run(drive(**args))))


# --- the measurement ----------------------------------------------------------------------------


def run_client(folder: Path, **args) -> dict:
    job = folder / "client.json"
    job.write_text(json.dumps(args))
    out = subprocess.run(
        [sys.executable, __file__, "--client", str(job)], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def shed_counts(port: int) -> dict[str, float]:
    """osrs_api_shed_requests_total by reason, from the API's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("osrs_api_shed_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            counts[labels.split('"')[1]] = float(value)
    return counts


def run_phase(folder: Path, api: Api, **args) -> dict:
    """One client run, with the CPU the API process and the client took (1.0 = one core)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    api_cpu, wall, load_1m = api.cpu_s(), time.perf_counter(), os.getloadavg()[0]
    result = run_client(folder, **args)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    return result | {
        "api_cpu_share": round((api.cpu_s() - api_cpu) / wall, 2),
        "client_cpu_share": round(client_cpu / wall, 2),
        "load_1m_before": round(load_1m, 2),
    }


def measure_config(
    folder: Path, name: str, env: dict, database_url: str, nats_url: str, capacity_rps: float | None
) -> dict:
    """The three phases on a fresh API process; the open-loop rates are taken from
    `capacity_rps` when given (the first configuration's), else from this one's capacity."""
    api = Api(folder, database_url, nats_url)
    api.password = ADMIN_PASSWORD  # the admin is created by the first API process only
    api.env |= env | {"OSRS_ADMIN_PASSWORD": ADMIN_PASSWORD}
    api.start()
    try:
        token = api.token()
        paths = [f"/v1/players/sim_{i}" for i in range(1, PLAYERS + 1)]
        common = {"port": api.port, "paths": paths, "token": token, "timeout_s": CLIENT_TIMEOUT_S}
        run_client(folder, rate=None, seconds=1.0, connections=8, **common)  # warm
        capacity = run_phase(
            folder, api, rate=None, seconds=CAPACITY_S, connections=CAPACITY_CONNECTIONS, **common
        )
        print(f"{name} capacity {capacity}", file=sys.stderr, flush=True)
        rps = capacity_rps or capacity["ok_rps"]
        phases = {"capacity": capacity}
        for phase, factor, seconds in (
            ("overload", OVERLOAD_FACTOR, OVERLOAD_S),
            ("recovery", RECOVERY_FACTOR, RECOVERY_S),
        ):
            target = round(rps * factor, 1)
            found = run_phase(
                folder, api, rate=target, seconds=seconds, connections=CONNECTIONS, **common
            )
            phases[phase] = found | {"target_rps": target}
            print(f"{name} {phase} {phases[phase]}", file=sys.stderr, flush=True)
        phases["shed_by_reason"] = shed_counts(api.port)
        return phases
    finally:
        api.stop()


def measure(folder: Path) -> dict:
    local_nats = LocalNats(folder / "nats", free_port()).start()
    local_pg = None
    try:
        database_url, local_pg = bench_database(folder / "pg", BENCH_DB)
        load_history(database_url, PLAYERS, DAYS)
        results: dict[str, dict] = {}
        capacity_rps = None
        for name, env in CONFIGS.items():
            results[name] = measure_config(
                folder, name, env, database_url, local_nats.url, capacity_rps
            )
            capacity_rps = capacity_rps or results[name]["capacity"]["ok_rps"]
        return results
    finally:
        local_nats.stop()
        if local_pg is not None:
            local_pg.discard()


# --- the report ---------------------------------------------------------------------------------


HEADER = (
    "| config | phase | target req/s | sent req/s | 200 req/s | p50 ms | p99 ms | max ms "
    "| statuses | client timeouts | send lag p99 ms | API CPU | client CPU | load 1m |\n"
    + "|---" * 14
    + "|"
)


def markdown(results: dict, took_s: float) -> str:
    d = Settings()
    rows = []
    for config, phases in results.items():
        for phase in ("capacity", "overload", "recovery"):
            r = phases[phase]
            share = ", ".join(f"{s}: {v:.1%}" for s, v in r["share"].items())
            target = f"{r['target_rps']:,.0f}" if "target_rps" in r else "closed, 64 conn."
            rows.append(
                f"| {config} | {phase} | {target} | {r['sent_rps']:,.0f} | {r['ok_rps']:,.0f} "
                f"| {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {share} "
                f"| {r['timeouts']} | {r['send_lag_p99_ms']} | {r['api_cpu_share']} "
                f"| {r['client_cpu_share']} | {r['load_1m_before']} |"
            )
    shed = {config: phases["shed_by_reason"] for config, phases in results.items()}
    by_second = "\n".join(
        f"- {config} {phase}: "
        + " ".join(f"{x:.0%}" for x in phases[phase]["not_ok_share_by_second"])
        for config, phases in results.items()
        for phase in ("overload", "recovery")
    )
    return f"""# API overload (bench/api_overload.py)

    .venv/bin/python bench/api_overload.py --write

One API process (`python -m services.api`, uvicorn with uvloop and httptools), {PLAYERS}
players x {DAYS} days of history, route `GET /v1/players/{{name}}` with the names rotating. Per
configuration, on a fresh process: the capacity (closed loop, {CAPACITY_CONNECTIONS}
connections, {CAPACITY_S:g} s), then an open loop (requests sent on schedule, answered or not)
at {OVERLOAD_FACTOR:g}x the first configuration's capacity for {OVERLOAD_S:g} s from up to
{CONNECTIONS} connections, then at {RECOVERY_FACTOR:g}x for {RECOVERY_S:g} s. Client timeout
{CLIENT_TIMEOUT_S:g} s. Latencies run from the moment a request was due (not sent: waiting for a
free connection counts) to the whole answer, over every answer (200 and 503 alike); a request
not answered within the client timeout of being due counts as a timeout; `send lag` is how late
the client sent (all connections busy, or the client short of CPU); CPU is CPU
seconds / wall seconds (1.0 = one core); `load 1m` the machine's load average before the phase
(2 cores, shared with other people's work). A rerun with `--write` replaces this file.

- `protected`: the defaults (`OSRS_API_MAX_INFLIGHT` {d.api_max_inflight}, `OSRS_API_MAX_QUEUED`
  {d.api_max_queued}, `OSRS_API_QUEUE_TIMEOUT_S` {d.api_queue_timeout_s:g},
  `OSRS_API_POOL_TIMEOUT_S` {d.api_pool_timeout_s:g}, `OSRS_API_STATEMENT_TIMEOUT_S`
  {d.api_statement_timeout_s:g}).
- `unprotected`: `OSRS_API_MAX_INFLIGHT=1000000 OSRS_API_POOL_TIMEOUT_S=30`: the API as it was.
- `queue 64`, `queue 1024`: the defaults but `OSRS_API_MAX_QUEUED`.

## Results ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {took_s:.0f} s)

{HEADER}
{chr(10).join(rows)}

503s by reason (`osrs_api_shed_requests_total`, whole run): {json.dumps(shed)}

Share of the requests due in each second that did not get a 200 (503 or client timeout):

{by_second}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="write bench/api_overload.md")
    ap.add_argument("--client", help=argparse.SUPPRESS)  # the load generator's job file
    args = ap.parse_args()
    if args.client:
        _client_main(Path(args.client))
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="osrs-api-overload-") as folder:
        Path(folder).chmod(0o755)  # as root the cluster runs as `postgres`
        results = measure(Path(folder))
    print(json.dumps(results, indent=2))
    if args.write:
        path = Path(__file__).with_suffix(".md")
        path.write_text(markdown(results, time.monotonic() - started))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
