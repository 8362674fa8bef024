"""`osrs-diff`: the product's command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg

from shared import db, logs
from shared.settings import SettingsError, get_settings


def _migrate(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        applied = db.migrate(settings.database_url)
    except psycopg.OperationalError as exc:
        print(f"osrs-diff migrate: cannot reach the database: {exc}".strip(), file=sys.stderr)
        return 1
    print(
        f"applied migrations: {', '.join(map(str, applied))}" if applied else "schema is up to date"
    )
    return 0


def _sim(args: argparse.Namespace) -> int:
    from sim.app import serve
    from sim.population import DEFAULT_EPOCH

    if args.epoch is None:
        args.epoch = DEFAULT_EPOCH

    print(
        f"hiscores simulator: {args.players} players on http://{args.host}:{args.port}", flush=True
    )
    serve(
        players=args.players,
        port=args.port,
        host=args.host,
        seed=args.seed,
        tick_s=args.tick,
        epoch=args.epoch,
    )
    return 0


def _epoch(value: str) -> float:
    return time.time() if value == "now" else float(value)


def _up(args: argparse.Namespace) -> int:
    from services.local import LocalServerError
    from services.up import run

    try:
        return run(
            demo=args.demo, data_dir=Path(args.data_dir).absolute(), sim_players=args.players
        )
    except LocalServerError as exc:
        print(f"osrs-diff up: {exc}", file=sys.stderr)
        return 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="osrs-diff", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    migrate = commands.add_parser("migrate", help="apply the SQL migrations to DATABASE_URL")
    migrate.set_defaults(func=_migrate)

    sim = commands.add_parser("sim", help="serve the hiscores simulator")
    sim.add_argument("--players", type=int, default=1000, help="population size (default 1000)")
    sim.add_argument("--port", type=int, default=8001)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--seed", type=int, default=1, help="same seed, same answers")
    sim.add_argument(
        "--tick",
        type=float,
        default=60.0,
        help="seconds between two gains of an active player (default 60)",
    )
    sim.add_argument(
        "--epoch",
        type=_epoch,
        default=None,
        help="unix time of tick 0, or 'now' (use 'now' with short ticks, or active "
        "players are at 200M xp already); default 2025-01-01",
    )
    sim.set_defaults(func=_sim)

    up = commands.add_parser("up", help="run the whole product in the foreground")
    up.add_argument(
        "--demo",
        action="store_true",
        help="with the simulator as the hiscores and a few tracked players",
    )
    up.add_argument(
        "--data-dir", default=".data", help="where embedded NATS and Postgres keep data"
    )
    up.add_argument("--players", type=int, default=1000, help="simulated players (demo)")
    up.set_defaults(func=_up)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"osrs-diff: {exc}", file=sys.stderr)
        return 2
    logs.configure("osrs-diff", settings.log_level)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
