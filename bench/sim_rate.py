"""The simulator's raw rate: how many hiscores lookups a second it answers under uvicorn, next
to a trivial ASGI app under the same server, so that it is never mistaken for the bottleneck
of a fetcher benchmark.

    .venv/bin/python bench/sim_rate.py [--seconds 3] [--players 1000] [--depth 8]

Each server runs in a subprocess on a free loopback port, configured like `osrs-diff sim`
(shared.serving.serve_asgi: uvicorn, one process). The load comes from separate processes
speaking raw HTTP/1.1 over keep-alive sockets, several requests in flight per connection, so
the client costs a few microseconds a request. Both sides' CPU use is printed: a server near
100% and a client well below it means the number is the server's."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOKUP = "/m=hiscore_oldschool/index_lite.json?player=Sim%20{}"
TRIVIAL_BODY = b'{"name":"x","skills":[],"activities":[]}' * 160  # about a payload's size


# --- servers ------------------------------------------------------------------------------------


async def trivial_app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(TRIVIAL_BODY)),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": TRIVIAL_BODY})


def run_server(kind: str, port: int, players: int, tick_s: float) -> None:
    sys.path.insert(0, str(ROOT))
    from shared.serving import serve_asgi

    if kind == "trivial":
        serve_asgi(trivial_app, "127.0.0.1", port)
        return
    from sim.app import serve

    # A thousand ticks in: far from 200M, whatever the tick.
    serve(players=players, port=port, tick_s=tick_s, epoch=time.time() - 1000 * tick_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(kind: str, players: int, tick_s: float) -> tuple[subprocess.Popen, int]:
    port = free_port()
    args = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    args += ["--players", str(players), "--tick", str(tick_s)]
    server = subprocess.Popen(args, cwd=ROOT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, port
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"the {kind} server exited with {server.returncode}") from None
            time.sleep(0.05)
    server.kill()
    raise SystemExit(f"the {kind} server did not start")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux); 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the load -----------------------------------------------------------------------------------


async def _connection(port: int, first: int, players: int, depth: int, until: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done, n = 0, first
    try:
        while time.monotonic() < until:
            batch = []
            for _ in range(depth):
                path = LOOKUP.format(n % players + 1)
                batch.append(f"GET {path} HTTP/1.1\r\nHost: sim\r\n\r\n".encode())
                n += 7919  # a prime stride: every player comes round, in a scattered order
            writer.write(b"".join(batch))
            for _ in range(depth):
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
                start = head.lower().index(b"content-length:") + 15
                await reader.readexactly(int(head[start : head.index(b"\r\n", start)]))
                done += 1
    finally:
        writer.close()
    return done


async def _load(port: int, seed: int, players: int, conns: int, depth: int, seconds: float):
    until = time.monotonic() + seconds
    tasks = [_connection(port, seed * 1000 + c * 131, players, depth, until) for c in range(conns)]
    return sum(await asyncio.gather(*tasks))


def client(port: int, seed: int, players: int, conns: int, depth: int, seconds: float, out) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    done = asyncio.run(_load(port, seed, players, conns, depth, seconds))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put((done, usage.ru_utime + usage.ru_stime))


def measure(
    port: int, pid: int, players: int, args: argparse.Namespace, seconds: float
) -> tuple[float, ...]:
    """Requests per second over `seconds`, the server's CPU share and the clients' mean one."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    clients = [
        context.Process(
            target=client,
            args=(port, k, players, args.connections, args.depth, seconds, out),
        )
        for k in range(args.clients)
    ]
    for process in clients:
        process.start()
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    results = [out.get(timeout=seconds + 30) for _ in clients]
    elapsed = time.monotonic() - started
    server_cpu = (cpu_seconds(pid) - cpu_before) / elapsed
    for process in clients:
        process.join()
    done = sum(r[0] for r in results)
    client_cpu = sum(r[1] for r in results) / len(results) / seconds
    return done / seconds, server_cpu, client_cpu


def bench(kind: str, args: argparse.Namespace, tick_s: float, players: int = 0) -> float:
    players = players or args.players
    server, port = start_server(kind, players, tick_s)
    try:
        measure(port, server.pid, players, args, args.warmup)  # fill caches, settle the loop
        rate, server_cpu, client_cpu = measure(port, server.pid, players, args, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=10)
    label = kind if kind == "trivial" else f"sim, {players} players, tick {tick_s:g} s"
    print(
        f"{label:<34} {rate:>9,.0f} req/s   server CPU {server_cpu:4.0%}"
        f"   client CPU {client_cpu:4.0%} (each of {args.clients})",
        flush=True,
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per server")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument("--big", type=int, default=50_000, help="players in the uncached run")
    parser.add_argument("--clients", type=int, default=1, help="load processes")
    parser.add_argument("--connections", type=int, default=16, help="per load process")
    parser.add_argument("--depth", type=int, default=8, help="requests in flight per connection")
    parser.add_argument("--serve", choices=("sim", "trivial"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tick", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run_server(args.serve, args.port, args.players, args.tick)
        return
    print(f"{os.cpu_count()} CPUs; {args.players} players; {args.seconds:g} s per server")
    baseline = bench("trivial", args, 60.0)
    # Tick 60 s: an answer is built once a tick (once a day for an idle player), then cached.
    warm = bench("sim", args, 60.0)
    # Tick 1 ms: every lookup of an active player is a new payload.
    fresh = bench("sim", args, 0.001)
    # More players than the caches hold: the worst case, nearly everything built from scratch.
    cold = bench("sim", args, 60.0, args.big)
    print(
        f"sim / trivial: {warm / baseline:.2f} (cached), {fresh / baseline:.2f} (new tick), "
        f"{cold / baseline:.2f} (uncached)"
    )


if __name__ == "__main__":
    main()
