"""Every benchmark of osrs-diff, on servers the parts start themselves; writes
bench/results.json (flat keys, numbers only) and BENCHMARKS.md.

    .venv/bin/python bench/run.py                  # quick sizes (make bench, < 5 minutes)
    .venv/bin/python bench/run.py --full           # full sizes (make bench-full)
    .venv/bin/python bench/run.py --only log,api   # some parts; the others keep their last figures

The parts: `log` (this file and bench/measures.py: projector, rebuild, storage, dedup), `fetch`
(bench/fetch_rate.py), `api` (bench/api_load.py) and `stack` (bench/stack.py: freshness, RSS).
For `log`:

A nats-server (services.local.LocalNats) and, unless DATABASE_URL is set, a non-durable Postgres
cluster (LocalPostgres(durable=False): fsync and synchronous_commit off) run in a temporary
folder that is removed at the end. With DATABASE_URL the database `osrs_bench` on that server is
dropped and created afresh."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nats
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import api_load, fetch_rate, measures, stack  # noqa: E402
from services.local import LocalNats, bench_database, free_port  # noqa: E402
from shared import nats as natsx  # noqa: E402
from shared.settings import Settings  # noqa: E402

# events for the projector; copies of them make the log the rebuild reads (and stores)
SIZES = {"quick": {"events": 20_000, "copies": 4}, "full": {"events": 200_000, "copies": 4}}
BENCH_DB = "osrs_bench"

# key: (bar as text, the baseline key the ratio is taken to, what limits the figure)
LOG_ROWS = {
    "projector_events_per_s": (
        ">= 3000",
        "raw_copy_rows_per_s",
        "one projector process, batches of 256, one transaction each; Python CPU in that "
        "process (see projector_cpu_share), then the database round trips",
    ),
    "projector_cpu_ms_per_event": (
        "",
        None,
        "the projector process's CPU milliseconds per event: steadier than the rate when "
        "other work shares the cores",
    ),
    "raw_copy_rows_per_s": (
        "baseline",
        None,
        "one COPY of the same packed rows into a table like `observations` (primary key, "
        "no foreign key): the database's raw speed",
    ),
    "rebuild_1m_events_s": (
        "<= 360",
        None,
        "`osrs-diff rebuild`'s code over a log of 1M events (full size only), swap included",
    ),
    "rebuild_events_per_s": (
        "",
        "projector_events_per_s",
        "the rebuild's rate (batches of 1,000, no outbox), over the whole log of this run",
    ),
    "bytes_per_observation": (
        "<= 500",
        None,
        "pg_total_relation_size('observations') / rows after VACUUM ANALYZE, on the rows the "
        "rebuild stored (1M full, 100k quick)",
    ),
    "observations_per_fetch_70pct_idle": (
        "<= 0.35",
        "fetch_dedup_active_share",
        "payload_hash over simulator payloads (no NATS, no HTTP); the baseline is the share "
        "of active players, so 1.0 means exactly the active players' fetches stored",
    ),
}
PARTS = {  # name: (rows, measure(folder, size) -> dict, notes)
    "log": (LOG_ROWS, None, None),
    "fetch": (fetch_rate.ROWS, fetch_rate.measure, "bench/fetch_rate.md"),
    "api": (api_load.ROWS, api_load.measure, "bench/api_load.md"),
    "stack": (stack.ROWS, stack.measure, "bench/stack.md"),
}


async def measure_log(nats_url: str, database_url: str, size: str) -> dict:
    started = time.perf_counter()
    events = measures.encoded(measures.observations(SIZES[size]["events"]))
    # The events live on as bytes only: millions of small objects held here would make every
    # garbage collection of the projector's run scan them.
    gc.collect()
    generated_s = time.perf_counter() - started
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        await natsx.declare(js, Settings(nats_url=nats_url, database_url=database_url))
        last_seq = await measures.preload(js, events)
        print(f"preloaded {last_seq} events ({generated_s:.0f} s to generate)", flush=True)
        results = await measures.projector_rate(js, database_url, last_seq)
        results["projector_events"] = last_seq
        results["projector_cpu_ms_per_event"] = (
            1000 * results["projector_cpu_share"] * results["projector_seconds"] / last_seq
        )
        results |= measures.raw_copy_rate(database_url)
        last_seq = await measures.copies(js, events, SIZES[size]["copies"])
        del events
        print(f"log of {last_seq} events for the rebuild", flush=True)
    finally:
        await client.close()
    results |= await measures.rebuild_rate(nats_url, database_url)
    if results["rebuild_events"] >= 1_000_000:
        results["rebuild_1m_events_s"] = (
            results["rebuild_seconds"] * 1e6 / results["rebuild_events"]
        )
    return results


def pg_version(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0])


def machine() -> dict:
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count() or 0,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }


def run_log(size: str, folder: Path) -> tuple[dict, dict]:
    local_nats = LocalNats(folder / "nats", free_port()).start()
    local_pg = None
    try:
        database_url, local_pg = bench_database(folder / "pg", BENCH_DB)
        # numbers, as results.json holds only numbers: kept for a run of other parts
        info = {
            "postgres_version_num": pg_version(database_url),
            "postgres_local": int(bool(local_pg)),
        }
        results = asyncio.run(measure_log(local_nats.url, database_url, size))
        results |= measures.storage(database_url)
        results |= measures.fetch_dedup()
        return results, info
    finally:
        local_nats.stop()
        if local_pg is not None:
            local_pg.discard()


def ratio(results: dict, key: str, baseline: str | None) -> str:
    if baseline is None or not results.get(baseline) or key not in results:
        return ""
    return f"{results[key] / results[baseline]:.3f}"


def fmt(value: float | None) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3f}"


def postgres(results: dict) -> str:
    version = int(results.get("postgres_version_num", 0))
    where = (
        "LocalPostgres(durable=False): fsync, synchronous_commit off"
        if results.get("postgres_local")
        else "DATABASE_URL's server, database osrs_bench"
    )
    return f"{version // 10000}.{version % 10000} ({where})" if version else "?"


def meets(value: float | None, bar: str) -> str:
    """ "yes" or "NO" for a bar like ">= 3000" or "<= 25"; "" when there is none."""
    for sign, holds in ((">=", float.__ge__), ("≥", float.__ge__), ("<=", float.__le__)):
        if bar.startswith(sign) and value is not None:
            return "yes" if holds(float(value), float(bar[len(sign) :])) else "NO"
    return ""


def table(results: dict) -> str:
    lines = [
        "| key | value | bar | met | ratio (to) | what limits it |",
        "|---|---|---|---|---|---|",
    ]
    for rows, _, _ in PARTS.values():
        for key, (bar, baseline, limits) in rows.items():
            to = f" ({baseline})" if baseline else ""
            value = results.get(key)
            lines.append(
                f"| `{key}` | {fmt(value)} | {bar} | {meets(value, bar)} "
                f"| {ratio(results, key, baseline)}{to} | {limits} |"
            )
    return "\n".join(lines)


def markdown(results: dict, info: dict, size: str, command: str, seconds: dict) -> str:
    shown = {key for rows, _, _ in PARTS.values() for key in rows}
    others = ", ".join(f"`{k}` = {fmt(v)}" for k, v in sorted(results.items()) if k not in shown)
    took = ", ".join(f"{part} {s:.0f} s" for part, s in seconds.items())
    kept = ", ".join(part for part in PARTS if part not in seconds)
    kept = f"; the figures of {kept} are those of the run before, kept in results.json" * bool(kept)
    notes = ", ".join(f"[{notes}]({notes})" for _, _, notes in PARTS.values() if notes)
    return f"""# Benchmarks

Written by `bench/run.py` ({size} sizes; {took}){kept}; the numbers are also in
`bench/results.json`. Run `make bench` (quick, < 5 minutes) or `make bench-full` (full sizes).

- date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
- command: `{command}`
- machine: {info["cores"]} cores ({info["cpu"]}), {info["ram_gb"]} GB RAM, Python {info["python"]},
  PostgreSQL {postgres(results)}, nats-server from
  services.local. Every part starts its own servers; the load generators run on the same 2 cores
  (their CPU shares are in the table).

{table(results)}

Other figures of the run: {others}.

How the fetch, API and stack figures are made, their profiles and the changes they led to:
{notes}. The rest is below.

## How the log figures are made

- **projector_events_per_s**: {results.get("projector_events", 0):,.0f} `HiscoreObserved`
  events are made from the simulator (`Population(2000, seed=1)`, each player looked at once a
  day, kept only when the fetcher's `payload_hash` changed: real payloads, ~1,300 of the 2,000
  players change every day), published to OSRS_EVT, then the projector's own code (`Projector`
  + `FeedLoops` of services/projector, in this process, pool of 4) applies them from the
  durable consumer: read models, outbox and checkpoint, one transaction per batch. The clock
  stops when `projector_checkpoints.last_seq` reaches the last sequence. Not in the figure:
  the outbox relay (not running), the metrics server, the advisory lock.
- **raw_copy_rows_per_s** (baseline): the rows the projector stored, COPYed out and COPYed
  into `bench_raw_observations (LIKE observations INCLUDING ALL)` in one transaction: the
  database's raw speed for the same rows, with none of the projector's reads and derivations.
- **rebuild**: {SIZES[size]["copies"]} copies of the events are published again as other
  players (`sim_12_c1`, ...), then `osrs-diff rebuild`'s code (services/projector/rebuild.py)
  replays the whole log of {results.get("rebuild_events", 0):,.0f} events into a staging schema
  and swaps it in. `rebuild_1m_events_s` is given only when the log holds 1M events or more.
- **bytes_per_observation**: the real `observations` table the rebuild made
  ({results.get("observations_stored", 0):,.0f} rows). bench/storage.py compares layouts.
- **observations_per_fetch_70pct_idle**: 1,000 simulator players, 700 idle and 300 active
  accounts, fetched hourly for 24 h; an observation whenever the hash differs from the
  player's previous one. An active account gains xp every simulator tick (1 h here), so the
  figure is the active share: the simulator has no "active but took a break" hours.

## Findings

{FINDINGS}

## Projector: what the profiles showed and what changed

{PROJECTOR_HISTORY}
"""


PROJECTOR_HISTORY = (ROOT / "bench" / "projector.md").read_text().strip()
FINDINGS = (ROOT / "bench" / "findings.md").read_text().strip()  # written by hand from a run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="the full sizes")
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results.json"))
    ap.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    size = "full" if args.full else "quick"
    only = [part for part in args.only.split(",") if part]
    if unknown := set(only) - set(PARTS):
        ap.error(f"unknown parts {sorted(unknown)}; the parts are {', '.join(PARTS)}")
    results_path = Path(args.results)
    # a part not run keeps its figures of the last run
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    info = machine()
    seconds: dict[str, float] = {}
    for part in only:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"osrs-bench-{part}-") as folder:
            Path(folder).chmod(0o755)  # as root the clusters run as `postgres`
            print(f"== {part}", flush=True)
            if part == "log":
                got, pg_info = run_log(size, Path(folder))
                got |= pg_info
            else:
                got = PARTS[part][1](Path(folder), size)
        results |= got
        seconds[part] = time.monotonic() - started
    results = {k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}
    results |= {f"bench_seconds_{part}": round(took, 1) for part, took in seconds.items()}
    results_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    command = "make bench-full" if args.full else "make bench"
    if set(only) != set(PARTS):
        command = f"bench/run.py {'--full ' if args.full else ''}--only {','.join(only)}"
    Path(args.markdown).write_text(markdown(results, info, size, command, seconds))
    for key, value in sorted(results.items()):
        print(f"{key} = {value}")


if __name__ == "__main__":
    main()
