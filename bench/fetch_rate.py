"""Issue 8's `fetch_per_s`: players fully processed per second by ONE fetcher process (command
pulled, hiscores fetched from the simulator, payload hashed, outcome published, command acked),
with every command due at once; next to `sim_raw_per_s`, the simulator's own rate in the same run.

    .venv/bin/python bench/fetch_rate.py            # quick: 3,000 players, < 45 s
    .venv/bin/python bench/fetch_rate.py --full     # full: 20,000 players

Everything runs on this machine and is started here: a nats-server (services.local.LocalNats),
the simulator (bench/sim_rate.py's server, which also measures its raw rate on the same
population), and one fetcher process, the real entry (`python -m services.fetcher`) configured
by the environment. This process plays the scheduler: it publishes one FetchRequested per player
to OSRS_CMD (subject `osrs.cmd.fetch.<key>`, `Nats-Msg-Id` `<key>:<slot>`), all at once.

The clock runs from the first command published until OSRS_CMD is empty: it is a work-queue
stream, so a command leaves it only when the fetcher acks it, and the fetcher acks only after
the outcome (FetchCompleted, and HiscoreObserved when the hash changed) is stored. Every player
is new to the fetcher, so every fetch is a `changed` one: the heaviest path (hash read,
observation published, hash created, miss count read, status published)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
import nats.js.errors

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import sim_rate  # noqa: E402
from services.local import LocalNats, free_port  # noqa: E402
from shared import subjects  # noqa: E402
from shared.events import FetchReason, FetchRequested, encode  # noqa: E402
from shared.modes import GameMode  # noqa: E402

SIZES = {"quick": 3_000, "full": 20_000}
# The fetcher's knobs for the run. The rate limit is politeness towards Jagex: unlimited here,
# so that the figure is what one process can do. Concurrency (OSRS_FETCH_CONCURRENCY, commands
# in hand and HTTP connections): 16 is the fastest; at 64 httpcore's pool bookkeeping, which
# polls every idle connection for each request, takes a third of the fetcher's CPU (see
# bench/fetch_rate.md). FETCH_RATE_CONCURRENCY overrides it (ad hoc).
FETCH_CONCURRENCY = int(os.environ.get("FETCH_RATE_CONCURRENCY") or 16)
FETCH_RATE = 1_000_000
PUBLISH_IN_FLIGHT = 512
SLOT = 1
SIM_TICK_S = 60.0  # an answer changes once a simulated minute: each player is fetched once
RAW_SECONDS = 3.0

ROWS: dict[str, tuple[str, str | None, str]] = {
    "fetch_per_s": (
        "≥ 500",
        "sim_raw_per_s",
        "one fetcher process (command → HTTP → hash → publish → ack), all players due at once, "
        f"first fetch of each (every one `changed`), {FETCH_CONCURRENCY} in flight, no rate "
        "limit; the fetcher's own CPU (its share is next)",
    ),
    "sim_raw_per_s": (
        "baseline",
        None,
        "bench/sim_rate.py's load (raw HTTP/1.1, 16 keep-alive connections × 8 pipelined) on "
        "the same simulator process and population, before the fetch run",
    ),
    "fetch_fetcher_cpu_share": (
        "",
        None,
        "the fetcher process's CPU seconds / wall seconds of the fetch run (1.0 = one core)",
    ),
    "fetch_fetcher_cpu_ms": (
        "",
        None,
        "the fetcher's CPU milliseconds per player processed; steadier than the rate when "
        "other work shares the cores",
    ),
    "fetch_sim_cpu_share": (
        "",
        None,
        "the simulator's CPU share during the fetch run (load generator, same 2 cores)",
    ),
    "fetch_nats_cpu_share": (
        "",
        None,
        "nats-server's CPU share during the fetch run (same 2 cores)",
    ),
    "fetch_driver_cpu_share": (
        "",
        None,
        "this benchmark's own process (publishing the commands, polling OSRS_CMD)",
    ),
}


def fetcher_env(nats_url: str, hiscores_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        NATS_URL=nats_url,
        OSRS_HISCORES_URL=hiscores_url,
        OSRS_FETCH_RATE=str(FETCH_RATE),
        OSRS_FETCH_CONCURRENCY=str(FETCH_CONCURRENCY),
        OSRS_METRICS_PORT="0",
        OSRS_LOG_FORMAT="json",
        OSRS_LOG_LEVEL=env.get("OSRS_LOG_LEVEL", "INFO"),  # the production default
        PYTHONPATH=str(fetcher_root()),
    )
    return env


def fetcher_root() -> Path:
    # FETCH_RATE_FETCHER_ROOT: another checkout's services/shared (a before/after comparison).
    return Path(os.environ.get("FETCH_RATE_FETCHER_ROOT") or ROOT)


def start_fetcher(folder: Path, nats_url: str, hiscores_url: str) -> subprocess.Popen:
    log = open(folder / "fetcher.log", "ab")  # noqa: SIM115 - the child holds it
    args = [sys.executable, "-m", "services.fetcher"]
    if os.environ.get("FETCH_RATE_PROFILE"):  # py-spy record around the fetcher (profiling)
        spy = Path(sys.executable).parent / "py-spy"
        out = os.environ["FETCH_RATE_PROFILE"]
        args = [str(spy), "record", "-r", "200", "-f", "speedscope", "-o", out, "--", *args]
    elif os.environ.get("FETCH_RATE_WRAP"):  # e.g. "valgrind --tool=callgrind": counts, not time
        args = [*os.environ["FETCH_RATE_WRAP"].split(), *args]
    return subprocess.Popen(
        args, cwd=fetcher_root(), env=fetcher_env(nats_url, hiscores_url), stdout=log, stderr=log
    )


def commands(players: int) -> list[tuple[str, bytes, str]]:
    """(subject, body, message id) of each player's scheduled command, as the scheduler makes
    them (services/scheduler/app.py: `_publish`)."""
    out = []
    for number in range(1, players + 1):
        cmd = FetchRequested(
            player_key=f"sim_{number}",
            display_name=f"Sim {number}",
            mode=GameMode.REGULAR,
            reason=FetchReason.SCHEDULED,
            slot=SLOT,
        )
        out.append(
            (subjects.fetch_subject(cmd.player_key), encode(cmd), f"{cmd.player_key}:{SLOT}")
        )
    return out


async def _wait_for_consumer(js, fetcher: subprocess.Popen, timeout: float = 60.0) -> None:
    timeout = 600 if os.environ.get("FETCH_RATE_WRAP") else timeout
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fetcher.poll() is not None:
            raise RuntimeError(f"the fetcher exited with {fetcher.returncode}; see fetcher.log")
        try:
            await js.consumer_info(subjects.CMD_STREAM, subjects.FETCHER_CONSUMER)
            return
        except nats.js.errors.NotFoundError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the fetcher did not create its consumer")


async def fetch_run(nats_url: str, fetcher: subprocess.Popen, pids: dict[str, int], n: int):
    """Publish n commands at once; time until OSRS_CMD is empty. Returns the figures."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        await _wait_for_consumer(js, fetcher)  # the fetcher has declared streams and buckets
        batch = commands(n)
        cpu_before = {name: sim_rate.cpu_seconds(pid) for name, pid in pids.items()}
        driver_before = time.process_time()
        started = time.perf_counter()
        for start in range(0, n, PUBLISH_IN_FLIGHT):
            acks = await asyncio.gather(
                *(
                    js.publish(
                        subject, body, stream=subjects.CMD_STREAM, headers={"Nats-Msg-Id": i}
                    )
                    for subject, body, i in batch[start : start + PUBLISH_IN_FLIGHT]
                )
            )
            if any(ack.duplicate for ack in acks):
                raise RuntimeError("a command was taken for a duplicate: stale stream?")
        published_s = time.perf_counter() - started
        while (await js.stream_info(subjects.CMD_STREAM)).state.messages:
            if fetcher.poll() is not None:
                raise RuntimeError(f"the fetcher exited with {fetcher.returncode}")
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        shares = {
            f"fetch_{name}_cpu_share": (sim_rate.cpu_seconds(pid) - cpu_before[name]) / elapsed
            for name, pid in pids.items()
        }
        shares["fetch_driver_cpu_share"] = (time.process_time() - driver_before) / elapsed
        status = (await js.stream_info(subjects.STATUS_STREAM)).state.messages
        observed = (await js.stream_info(subjects.EVT_STREAM)).state.messages
        if status != n:
            raise RuntimeError(f"{status} FetchCompleted for {n} commands")
    finally:
        await client.close()
    return {
        "fetch_per_s": n / elapsed,
        "fetch_players": n,
        "fetch_seconds": elapsed,
        "fetch_publish_seconds": published_s,
        "fetch_observations": observed,
        "fetch_concurrency": FETCH_CONCURRENCY,
        **shares,
    }


def sim_raw(port: int, pid: int, players: int) -> dict[str, float]:
    """bench/sim_rate.py's measure on our simulator: its raw rate and CPU shares."""
    load = argparse.Namespace(clients=1, connections=16, depth=8)
    sim_rate.measure(port, pid, players, load, 1.0)  # warm up: caches, the loop
    rate, server_cpu, client_cpu = sim_rate.measure(port, pid, players, load, RAW_SECONDS)
    return {
        "sim_raw_per_s": rate,
        "sim_raw_server_cpu_share": server_cpu,
        "sim_raw_client_cpu_share": client_cpu,
    }


def stop(proc: subprocess.Popen | None, timeout: float = 25.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT if proc.args[0].endswith("py-spy") else signal.SIGTERM)
    timeout = 300 if os.environ.get("FETCH_RATE_WRAP") else timeout
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(folder: Path, size: str) -> dict[str, float]:
    """Start nats-server, the simulator and one fetcher under `folder`; measure the simulator's
    raw rate, then the fetcher's rate on `SIZES[size]` players due at once."""
    n = SIZES[size] if size in SIZES else int(size)  # a number: that many players (ad hoc)
    folder.mkdir(parents=True, exist_ok=True)
    local = LocalNats(folder / "nats", free_port()).start(folder / "nats.log")
    sim = fetcher = None
    try:
        sim, sim_port = sim_rate.start_server("sim", n, SIM_TICK_S)
        results = sim_raw(sim_port, sim.pid, n)
        fetcher = start_fetcher(folder, local.url, f"http://127.0.0.1:{sim_port}")
        pids = {"fetcher": fetcher.pid, "sim": sim.pid, "nats": local.proc.pid}
        results |= asyncio.run(fetch_run(local.url, fetcher, pids, n))
    finally:
        stop(fetcher)
        stop(sim, 10)
        local.stop()
    results["fetch_vs_sim_raw"] = results["fetch_per_s"] / results["sim_raw_per_s"]
    # CPU per fetch: steadier than the rate when other work shares the cores.
    results["fetch_fetcher_cpu_ms"] = (
        1000 * results["fetch_fetcher_cpu_share"] / results["fetch_per_s"]
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="20,000 players (default: 3,000)")
    parser.add_argument("--keep", help="a folder to keep (logs, NATS store) instead of a temp one")
    parser.add_argument("--players", type=int, help="another number of players (ad hoc)")
    args = parser.parse_args()
    size = str(args.players) if args.players else "full" if args.full else "quick"
    started = time.perf_counter()
    if args.keep:
        results = measure(Path(args.keep), size)
    else:
        with tempfile.TemporaryDirectory(prefix="fetch-rate-") as tmp:
            results = measure(Path(tmp), size)
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()})
    print(
        f"{size}: {results['fetch_per_s']:,.0f} fetches/s vs the simulator's raw "
        f"{results['sim_raw_per_s']:,.0f} req/s (ratio {results['fetch_vs_sim_raw']:.3f}); "
        f"fetcher CPU {results['fetch_fetcher_cpu_share']:.0%}, simulator "
        f"{results['fetch_sim_cpu_share']:.0%}, nats-server {results['fetch_nats_cpu_share']:.0%}, "
        f"driver {results['fetch_driver_cpu_share']:.0%}; "
        f"fetcher {results['fetch_fetcher_cpu_ms']:.2f} CPU ms per fetch; "
        f"{time.perf_counter() - started:.0f} s in all"
    )


if __name__ == "__main__":
    main()
