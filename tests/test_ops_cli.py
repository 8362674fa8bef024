"""`osrs-diff import` and `osrs-diff status` as an operator runs them, against real NATS and
Postgres."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys

import psycopg
import pytest

from services.fetcher.resilience import BREAKER_STATE
from services.fetcher.worker import consumer_config
from services.importer import ImportFileError, read_players
from services.local import free_port
from shared import subjects, telemetry
from shared.events import FetchRequested, PlayerTracked, decode, encode
from shared.modes import GameMode
from tests.test_progress import tracked
from tests.test_rebuild import Live, publish


async def osrs_diff(*args: str, stdin: str = "", **env: str) -> tuple[int, str, str]:
    """The command line as a process: (exit status, stdout, stderr)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OSRS_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**base, **env},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"osrs-diff {' '.join(args)} hung\n{out.decode()}\n{err.decode()[-3000:]}")
    return proc.returncode, out.decode(), err.decode()


async def _all(js, stream: str, subject: str) -> list:
    info = await js.stream_info(stream, subjects_filter=subject)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        if msg.subject.startswith(subject.rstrip(">*")):
            found.append(msg)
    return found


# --- reading the file ------------------------------------------------------------------------


def test_names_one_per_line_with_blank_lines_comments_and_line_numbers():
    rows, invalid, duplicates = read_players(
        "# clan list\nZezima\n\n  Lynx Titan  \nno name!\nZEZIMA\nb0aty\n"
    )
    assert [(r.line, r.name, r.mode) for r in rows] == [
        (2, "Zezima", None),
        (4, "Lynx Titan", None),
        (7, "b0aty", None),
    ]
    assert [(s.line, s.text) for s in invalid] == [(5, "no name!")]
    assert "only letters, digits" in invalid[0].reason
    assert [(s.line, s.reason) for s in duplicates] == [(6, "the same player as line 2")]


def test_a_csv_with_a_name_and_an_optional_mode():
    rows, invalid, _ = read_players(
        "name,mode\nZezima,Ironman\nLynx Titan,\nWoox\nfoo,pirate\nbar,regular,extra\n"
    )
    assert [(r.line, r.name, r.mode) for r in rows] == [
        (2, "Zezima", GameMode.IRONMAN),
        (3, "Lynx Titan", None),
        (4, "Woox", None),
    ]
    reasons = {s.line: s.reason for s in invalid}
    assert reasons[5].startswith("unknown mode 'pirate': one of regular, ironman")
    assert reasons[6].startswith("more cells than the header's columns")


def test_the_columns_may_come_in_any_order():
    rows, _, _ = read_players("Mode,Name\nhardcore,Zezima\n")
    assert [(r.line, r.name, r.mode) for r in rows] == [(2, "Zezima", GameMode.HARDCORE)]


def test_a_csv_with_an_unknown_column_is_refused_whole():
    with pytest.raises(ImportFileError, match="line 1: the CSV header may name only name, mode"):
        read_players("name,interval\nZezima,60\n")


# --- osrs-diff import ------------------------------------------------------------------------


async def test_import_tracks_who_is_new_and_leaves_alone_who_is_tracked(
    js, nats_url, database_url, tmp_path
):
    live = Live(js, database_url)
    await live.start()
    await publish(js, tracked("zezima", GameMode.IRONMAN), tracked("woox"))
    await live.catch_up()
    before = len(await _all(js, subjects.EVT_STREAM, subjects.PLAYER_TRACKED))
    clan = tmp_path / "clan.csv"
    clan.write_text(
        "name,mode\n"
        "Zezima,ironman\n"  # tracked so already
        "Lynx Titan,\n"  # new: its account type detected
        "B0aty,hardcore\n"  # new
        "bad!name,\n"
        "Woox,ironman\n"  # tracked as regular: the mode changes
        "zezima,\n"  # the same player again
        "foo,pirate\n"
    )
    env = {"NATS_URL": nats_url, "DATABASE_URL": database_url}
    code, out, err = await osrs_diff("import", str(clan), **env)
    assert code == 2, err  # some lines were invalid; the others went in
    lines = out.splitlines()
    assert lines[0] == (
        "added 2, mode changed 1, already tracked 1, repeated in the file 1, invalid 2"
    )
    assert lines[1].startswith("line 5: 'bad!name': a player name may contain only")
    assert lines[2].startswith("line 8: 'foo': unknown mode 'pirate'")
    assert "import: 4/4 players (100%)" in err

    published = [
        decode(m.data, PlayerTracked)
        for m in await _all(js, subjects.EVT_STREAM, subjects.PLAYER_TRACKED)
    ][before:]
    assert {(e.player_key, e.mode, e.detect_mode, e.by) for e in published} == {
        ("lynx_titan", GameMode.REGULAR, True, "import"),
        ("b0aty", GameMode.HARDCORE, False, "import"),
        ("woox", GameMode.IRONMAN, False, "import"),
    }
    fetches = [
        decode(m.data, FetchRequested) for m in await _all(js, subjects.CMD_STREAM, "osrs.cmd.>")
    ]
    assert sorted(f.player_key for f in fetches if f.reason == "manual") == [
        "b0aty",
        "lynx_titan",
        "woox",
    ]

    # Once the projector has applied them, the same file changes nothing.
    await live.catch_up()
    code, out, _ = await osrs_diff("import", str(clan), **env)
    assert code == 2
    assert out.splitlines()[0] == (
        "added 0, mode changed 0, already tracked 4, repeated in the file 1, invalid 2"
    )
    again = await _all(js, subjects.EVT_STREAM, subjects.PLAYER_TRACKED)
    assert len(again) == before + 3
    await live.stop()


async def test_import_reads_names_from_standard_input(js, nats_url, database_url):
    code, out, _ = await osrs_diff(
        "import", "-", stdin="Sim 1\nSim 2\n", NATS_URL=nats_url, DATABASE_URL=database_url
    )
    assert (code, out.splitlines()[0]) == (
        0,
        "added 2, mode changed 0, already tracked 0, repeated in the file 0, invalid 0",
    )


async def test_import_without_nats_is_a_clear_error(database_url, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("Zezima\n")
    code, _, err = await osrs_diff(
        "import", str(names), NATS_URL="nats://127.0.0.1:9", DATABASE_URL=database_url
    )
    assert code == 1 and "osrs-diff import:" in err
    code, _, err = await osrs_diff("import", str(tmp_path / "missing.txt"))
    assert code == 1 and "cannot read" in err


# --- osrs-diff status ------------------------------------------------------------------------


async def _dead(js, n: int) -> None:
    await js.publish(
        subjects.dead_subject("projector", subjects.EVT_STREAM),
        b"{}",
        stream=subjects.DEAD_STREAM,
        headers={
            "Osrs-Dead-Reason": f"cannot decode: reason {n}",
            "Osrs-Original-Subject": f"osrs.evt.hiscore.observed.p{n}",
        },
    )


async def test_status_shows_lag_backlog_dead_letters_checkpoints_and_the_breaker(
    js, nats_url, database_url
):
    await js.add_consumer(subjects.CMD_STREAM, consumer_config())
    for n in range(3):
        cmd = FetchRequested(player_key=f"p{n}", display_name=f"P{n}")
        await js.publish(subjects.fetch_subject(cmd.player_key), encode(cmd))
    await publish(js, *[tracked(f"p{n}") for n in range(4)])  # the projector applied none
    for n in range(1, 7):
        await _dead(js, n)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO outbox (subject, payload) VALUES ('osrs.progress.p1.gains', '{}'),"
            " ('osrs.progress.p2.gains', '{}')"
        )
    fetcher = telemetry.MetricsServer("127.0.0.1", free_port(), {})
    fetcher.start()
    BREAKER_STATE.labels("hiscores.test").set(2)
    env = {"NATS_URL": nats_url, "DATABASE_URL": database_url}
    metrics = f"http://127.0.0.1:{fetcher.port}/metrics"
    try:
        code, out, err = await osrs_diff("status", "--fetcher-metrics", metrics, **env)
        assert code == 0, err
        assert re.search(r"^  OSRS_CMD +fetcher +3 +0 +0$", out, re.M)  # pending, ack pending
        assert re.search(r"^  OSRS_EVT +0 +4 +4$", out, re.M)  # applied, stream last, behind
        assert re.search(r"^  OSRS_STATUS +0 +0 +0$", out, re.M)
        assert "OUTBOX  2 unsent" in out
        assert "DEAD LETTERS  6 in OSRS_DEAD" in out
        dead = [line for line in out.splitlines() if line.startswith("  #")]
        assert len(dead) == 5 and dead[0].startswith("  #6 ")  # the last five, newest first
        assert dead[0].endswith("projector  osrs.evt.hiscore.observed.p6  cannot decode: reason 6")
        breaker = next(line for line in out.splitlines() if line.startswith("CIRCUIT BREAKER"))
        assert "open (hiscores.test)" in breaker and breaker.endswith(f"  from {metrics}")

        code, out, _ = await osrs_diff("status", "--json", "--fetcher-metrics", metrics, **env)
        status = json.loads(out)
        assert code == 0 and status["problems"] == []
        fetcher_lag = next(c for c in status["consumers"] if c["consumer"] == "fetcher")
        assert (fetcher_lag["pending"], fetcher_lag["ack_pending"]) == (3, 0)
        evt = next(c for c in status["checkpoints"] if c["stream"] == subjects.EVT_STREAM)
        assert (evt["applied"], evt["behind"]) == (0, 4)
        assert status["outbox_backlog"] == 2 and status["dead_letters_total"] == 6
        assert {"host": "hiscores.test", "state": "open"} in status["breakers"]
    finally:
        await fetcher.stop()

    code, out, _ = await osrs_diff("status", "--fetcher-metrics", "http://127.0.0.1:9/m", **env)
    assert code == 0  # the breaker is unknown, the rest known
    assert "CIRCUIT BREAKER  unknown: no fetcher metrics at http://127.0.0.1:9/m" in out


async def test_status_says_what_it_cannot_reach():
    code, out, _ = await osrs_diff(
        "status",
        "--fetcher-metrics",
        "http://127.0.0.1:9/metrics",
        NATS_URL="nats://127.0.0.1:9",
        DATABASE_URL="postgresql://postgres@127.0.0.1:9/osrs",
    )
    assert code == 1
    assert "CONSUMERS (pending" in out and "  unknown" in out
    assert "OUTBOX  unknown" in out and "DEAD LETTERS  unknown" in out
    assert "unreachable: NATS at nats://127.0.0.1:9" in out
    assert "unreachable: Postgres" in out
