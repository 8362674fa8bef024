"""`osrs-diff`: the product's command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from datetime import UTC
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
    from sim.faults import FaultError, parse_prefix, parse_rate
    from sim.population import DEFAULT_EPOCH

    if args.epoch is None:
        args.epoch = DEFAULT_EPOCH
    try:
        faults = dict(
            faults=args.faults,
            fault_rates=dict(parse_rate(r) for r in args.fault_rate) or None,
            fault_prefixes=dict(parse_prefix(p) for p in args.fault_prefix) or None,
            retry_after_s=args.retry_after,
            slow_s=args.slow,
            outage=args.outage or None,
            outage_every_s=args.outage_every,
            outage_for_s=args.outage_for,
            new_bosses=args.new_boss or None,
        )
    except FaultError as exc:
        print(f"osrs-diff sim: {exc.detail}", file=sys.stderr)
        return 2

    print(
        f"hiscores simulator: {args.players} players on http://{args.host}:{args.port}", flush=True
    )
    try:
        serve(
            players=args.players,
            port=args.port,
            host=args.host,
            seed=args.seed,
            tick_s=args.tick,
            epoch=args.epoch,
            **faults,
        )
    except FaultError as exc:
        print(f"osrs-diff sim: {exc.detail}", file=sys.stderr)
        return 2
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    import asyncio
    import gc

    import nats.errors

    from services.console import progress_bar
    from services.projector.rebuild import RebuildError, rebuild

    settings = get_settings()
    logs.configure("rebuild", settings.log_level, settings.log_format)
    gc.freeze()  # the modules live as long as the command: out of the collector's full scans
    try:
        report = asyncio.run(
            rebuild(settings, keep_old=args.keep_old, force=args.force, progress=progress_bar())
        )
    except (psycopg.OperationalError, nats.errors.Error, RebuildError, OSError) as exc:
        print(f"\nosrs-diff rebuild: {exc}".rstrip(), file=sys.stderr)
        return 1
    print(
        f"\nrebuilt the read models from {report.events:,} events in {report.seconds:.1f} s"
        + (f"; {report.dead} could not be applied (see the dead letters)" if report.dead else "")
        + ("; the old models are kept in schema osrs_replaced" if report.kept_old else ""),
        file=sys.stderr,
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    import nats.errors

    from services.console import progress_bar
    from services.importer import ImportFileError, Report, import_players, read_players

    try:
        if args.file == "-":
            text = sys.stdin.read().removeprefix("\ufeff")
        else:
            text = Path(args.file).read_text(encoding="utf-8-sig")  # a BOM from a spreadsheet
        rows, invalid, duplicates = read_players(text)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"osrs-diff import: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    except ImportFileError as exc:
        print(f"osrs-diff import: {exc}", file=sys.stderr)
        return 2
    report = Report()
    if rows:
        try:
            report = asyncio.run(
                import_players(get_settings(), rows, progress=progress_bar("import", "players"))
            )
        except (psycopg.OperationalError, nats.errors.Error, OSError, TimeoutError) as exc:
            print(f"\nosrs-diff import: {exc or type(exc).__name__}".rstrip(), file=sys.stderr)
            return 1
    print(
        f"added {len(report.added)}, mode changed {len(report.changed)}, already tracked"
        f" {len(report.already)}, repeated in the file {len(duplicates)}, invalid {len(invalid)}"
    )
    for skipped in invalid:
        print(f"line {skipped.line}: {skipped.text!r}: {skipped.reason}")
    return 2 if invalid else 0


def _status(args: argparse.Namespace) -> int:
    import msgspec

    from services.status import collect, render

    settings = get_settings()
    port = settings.metrics_port_for("fetcher")
    urls = args.fetcher_metrics or ([f"http://127.0.0.1:{port}/metrics"] if port else [])
    status = asyncio.run(collect(settings, urls))
    print(msgspec.json.encode(status).decode() if args.json else render(status))
    return 1 if status.problems else 0


def _dlq(args: argparse.Namespace) -> int:
    import nats.errors

    from services.dlq import DlqError

    if args.action == "replay" and not (args.seq or args.all):
        print("osrs-diff dlq replay: name dead letters (SEQ ...) or say --all", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_dlq_action(args))
    except (nats.errors.Error, OSError, TimeoutError, DlqError) as exc:
        print(f"osrs-diff dlq: {exc or type(exc).__name__}", file=sys.stderr)
        return 1


async def _dlq_action(args: argparse.Namespace) -> int:
    import collections

    from services import dlq
    from shared import nats as natsx

    nc = await natsx.connect_once(get_settings(), "osrs-diff-dlq")
    try:
        js = nc.jetstream()
        if args.action == "list":
            shown: collections.deque = collections.deque(maxlen=args.limit)
            total = 0
            async for dead, _, _ in dlq.dead_letters(js, service=args.service):
                shown.append(dead)
                total += 1
            for dead in shown:
                print(dlq.line(dead))
            print(
                f"{total} dead letters"
                + (f", the last {len(shown)} shown" if total > len(shown) else "")
            )
            return 0
        done: collections.Counter = collections.Counter()
        wanted = set(args.seq) or None
        async for dead, data, headers in dlq.dead_letters(js, service=args.service, seqs=wanted):
            what, said = await dlq.replay(js, dead, data, headers)
            print(f"#{dead.seq} {what}: {said}")
            done[what] += 1
        others = ", ".join(f"{n} {what}" for what, n in done.items() if what != "replayed")
        print(f"{done['replayed']} dead letters replayed" + (f" ({others})" if others else ""))
        return 0
    finally:
        await nc.close()


def _users(args: argparse.Namespace) -> int:
    from services import user_store

    try:
        if args.action in ("create", "set-password"):
            args.password = _new_password(args.password_stdin)
        return asyncio.run(_users_action(args))
    except user_store.InvalidUser as exc:
        print(f"osrs-diff users: {exc}", file=sys.stderr)
        return 2
    except user_store.UserError as exc:
        print(f"osrs-diff users: {exc}", file=sys.stderr)
        return 1
    except psycopg.errors.UndefinedTable:
        print("osrs-diff users: no users table: run osrs-diff migrate first", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:
        print(f"osrs-diff users: cannot reach the database: {exc}".strip(), file=sys.stderr)
        return 1


async def _users_action(args: argparse.Namespace) -> int:
    from services import user_store

    url = get_settings().database_url
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if args.action == "list":
            print(_user_table(await user_store.list_users(conn)))
        elif args.action == "create":
            user = await user_store.create_user(conn, args.name, args.password, args.role)
            print(f"created {user.role} {user.username!r}")
        elif args.action == "set-password":
            user = await user_store.change_user(conn, args.name, password=args.password)
            print(f"changed the password of {user.username!r}")
        elif args.action == "set-role":
            user = await user_store.change_user(conn, args.name, role=args.role)
            print(f"{user.username!r} is now {user.role}")
        else:
            disabled = args.action == "disable"
            user = await user_store.change_user(conn, args.name, disabled=disabled)
            print(f"{args.action}d {user.username!r}")
    return 0


def _new_password(from_stdin: bool) -> str:
    """From the first line of stdin, or asked twice at a prompt; checked before any database
    work, and never from the command line (where other users and the shell history see it)."""
    from services.user_store import MIN_PASSWORD, InvalidUser, check_password

    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    else:
        try:
            password = getpass.getpass(f"Password (at least {MIN_PASSWORD} characters): ")
            if getpass.getpass("Same password again: ") != password:
                raise InvalidUser("the two passwords differ")
        except EOFError:
            raise InvalidUser(
                "no password given: type it at the prompt or use --password-stdin"
            ) from None
    return check_password(password)


def _user_table(users: list) -> str:
    from services.console import table

    rows = [
        (
            u.username,
            u.role,
            "disabled" if u.disabled else "enabled",
            u.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
        )
        for u in users
    ]
    listed = table(("USERNAME", "ROLE", "STATUS", "CREATED (UTC)"), rows)
    return f"{listed}\n{len(users)} user{'' if len(users) == 1 else 's'}"


def _epoch(value: str) -> float:
    return time.time() if value == "now" else float(value)


def _down(args: argparse.Namespace) -> int:
    from services.local import LocalServerError
    from services.up import down

    try:
        print(down(Path(args.data_dir).absolute()))
    except LocalServerError as exc:
        print(f"osrs-diff down: {exc}", file=sys.stderr)
        return 1
    return 0


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

    rebuild = commands.add_parser(
        "rebuild",
        help="rebuild every read model from OSRS_EVT, the event log, while the API serves on",
    )
    rebuild.add_argument(
        "--keep-old", action="store_true", help="keep the old models in schema osrs_replaced"
    )
    rebuild.add_argument(
        "--force", action="store_true", help="rebuild even from an empty or truncated log"
    )
    rebuild.set_defaults(func=_rebuild)

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
    faults = sim.add_argument_group(
        "faults", "misbehave like the real hiscores (also at run time: PUT /_sim/faults)"
    )
    faults.add_argument("--faults", help="the whole fault config as JSON, or @FILE")
    faults.add_argument(
        "--fault-rate",
        action="append",
        default=[],
        metavar="KIND=P",
        help="serve KIND (404, 429, 500, 502, 503, 504, slow, html200, truncated,"
        " wrong_type, reset) to a share P of requests; repeatable",
    )
    faults.add_argument(
        "--fault-prefix",
        action="append",
        default=[],
        metavar="PREFIX=KIND",
        help="always serve KIND to names starting with PREFIX; repeatable",
    )
    faults.add_argument("--retry-after", type=int, help="Retry-After of a 429 (s, default 1)")
    faults.add_argument("--slow", type=float, help="delay of a slow answer (s, default 15)")
    faults.add_argument(
        "--outage",
        action="store_true",
        help="answer every request with the HTML outage page until switched off",
    )
    faults.add_argument(
        "--outage-every", type=float, metavar="S", help="an outage window every S s"
    )
    faults.add_argument("--outage-for", type=float, metavar="S", help="... lasting S s")
    faults.add_argument(
        "--new-boss",
        action="append",
        default=[],
        metavar="NAME@AFTER",
        help="insert a boss after an existing entry (JSON and CSV); repeatable",
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

    down = commands.add_parser("down", help="stop the `osrs-diff up` running on a data folder")
    down.add_argument("--data-dir", default=".data", help="its data folder (default .data)")
    down.set_defaults(func=_down)

    import_ = commands.add_parser(
        "import",
        help="track many players: names one per line, or a CSV with the header name,mode",
        description="Players tracked already (in that mode, when one is given) are left alone."
        " Exit status: 0 done, 1 NATS, Postgres or the file unreachable, 2 invalid lines (the"
        " others were imported).",
    )
    import_.add_argument("file", metavar="FILE", help="the file, or - for standard input")
    import_.set_defaults(func=_import)

    status = commands.add_parser(
        "status",
        help="consumer lag, outbox backlog, dead letters, checkpoints, circuit breaker",
        description="Exit status: 0, or 1 when NATS or Postgres cannot be reached (the rest is"
        " shown; a fetcher without metrics only makes the breaker unknown).",
    )
    status.add_argument(
        "--fetcher-metrics",
        action="append",
        metavar="URL",
        help="a fetcher's metrics endpoint, repeatable (default: http://127.0.0.1:"
        "OSRS_METRICS_PORT or 9101/metrics)",
    )
    status.add_argument("--json", action="store_true", help="print one JSON document")
    status.set_defaults(func=_status)

    dlq = commands.add_parser(
        "dlq",
        help="the dead letters: list them, or send them back where they came from",
        description="Exit status: 0, 1 when NATS cannot be reached or a dead letter is missing,"
        " 2 for bad arguments.",
    )
    dlq_actions = dlq.add_subparsers(dest="action", required=True)
    dlq_list = dlq_actions.add_parser("list", help="the dead letters, oldest first")
    dlq_list.add_argument("--limit", type=int, default=50, help="show the last N (default 50)")
    dlq_replay = dlq_actions.add_parser(
        "replay",
        help="publish dead letters to their original subject again and delete them",
    )
    dlq_replay.add_argument("seq", nargs="*", type=int, help="their numbers in `dlq list`")
    dlq_replay.add_argument("--all", action="store_true", help="every one (of --service)")
    for sub in (dlq_list, dlq_replay):
        sub.add_argument("--service", help="only those parked by this service")
    dlq.set_defaults(func=_dlq)

    users = commands.add_parser(
        "users",
        help="manage the users of the API in DATABASE_URL",
        description="Exit status: 0 done, 1 refused or failed (unknown user, name taken, the "
        "last admin, no database), 2 invalid input.",
    )
    users.set_defaults(func=_users)
    actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="print every user as a table")
    create = actions.add_parser("create", help="create a user; the password is asked twice")
    create.add_argument("name", help="1-64 printable characters; unique ignoring case")
    create.add_argument("--role", choices=("user", "admin"), default="user")
    set_password = actions.add_parser("set-password", help="set a user's password")
    set_password.add_argument("name")
    for parser_ in (create, set_password):
        parser_.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password (at least 8 characters) from the first line of stdin",
        )
    set_role = actions.add_parser("set-role", help="make a user an admin, or an admin a user")
    set_role.add_argument("name")
    set_role.add_argument("role", choices=("user", "admin"))
    for action, does in (("disable", "refuse"), ("enable", "accept")):
        actions.add_parser(action, help=f"{does} a user's requests from now on").add_argument(
            "name"
        )
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"osrs-diff: {exc}", file=sys.stderr)
        return 2
    logs.configure("osrs-diff", settings.log_level, settings.log_format)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
