"""`osrs-diff import FILE|-`: track many players at once, from names one per line or a CSV with
the header `name,mode` (mode optional: detected when empty). Each is tracked as POST /v1/players
tracks it; a player tracked already (in that mode, when one is given) is left alone, so running
the same file twice changes nothing."""

from __future__ import annotations

import csv
from collections.abc import Iterator

import msgspec
import psycopg

from services import tracking
from services.console import Progress
from shared import nats as natsx
from shared.modes import GameMode
from shared.players import player_key, validate_name
from shared.settings import Settings

KNOWN = "SELECT key, mode, interval_s, tracked FROM players WHERE key = ANY(%s)"
COLUMNS = ("name", "mode")


class ImportFileError(ValueError):
    """The file as a whole cannot be read (an unknown CSV column)."""


class Row(msgspec.Struct, frozen=True):
    line: int
    name: str  # validated
    mode: GameMode | None


class Skipped(msgspec.Struct, frozen=True):
    line: int
    text: str
    reason: str


class Report(msgspec.Struct):
    added: list[str] = msgspec.field(default_factory=list)  # newly tracked, or again
    changed: list[str] = msgspec.field(default_factory=list)  # tracked, now in another mode
    already: list[str] = msgspec.field(default_factory=list)  # tracked as asked: nothing done


def read_players(text: str) -> tuple[list[Row], list[Skipped], list[Skipped]]:
    """(rows to import, invalid lines, repeated players). Blank lines and `#` comments are
    skipped; a file whose first line is a header naming the column `name` (`name`, `name,mode`,
    `mode,name`) is read as CSV."""
    rows: list[Row] = []
    invalid: list[Skipped] = []
    duplicates: list[Skipped] = []
    first_line: dict[str, int] = {}
    for line, name, mode, extra in _entries(text):
        try:
            if extra:
                raise ValueError(f"more cells than the header's columns ({', '.join(COLUMNS)})")
            row = Row(line, validate_name(name), _mode(mode))
        except ValueError as exc:  # InvalidPlayerName, an unknown mode, a cell too many
            invalid.append(Skipped(line, name, str(exc)))
            continue
        key = player_key(row.name)
        if key in first_line:
            duplicates.append(Skipped(line, name, f"the same player as line {first_line[key]}"))
            continue
        first_line[key] = line
        rows.append(row)
    return rows, invalid, duplicates


def _entries(text: str) -> Iterator[tuple[int, str, str, bool]]:
    """(line number, name, mode or '', whether the line has cells beyond the header's) of each
    entry."""
    lines = text.splitlines()
    content = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    content = [(n, line) for n, line in content if not line.lstrip().startswith("#")]
    if not content:
        return
    header_at, header = content[0]
    columns = [c.strip().lower() for c in next(csv.reader([header]))]
    if "name" not in columns:  # names one per line
        for n, line in content:
            yield n, line.strip(), "", False
        return
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown or len(set(columns)) != len(columns):
        raise ImportFileError(
            f"line {header_at}: the CSV header may name only {', '.join(COLUMNS)}, once each;"
            f" got {header.strip()!r}"
        )
    for n, line in content[1:]:
        cells = next(csv.reader([line]))
        entry = dict(zip(columns, cells, strict=False))
        name, mode = entry.get("name", "").strip(), entry.get("mode", "").strip()
        yield n, name, mode, len(cells) > len(columns)


def _mode(text: str) -> GameMode | None:
    if not text:
        return None
    try:
        return GameMode(text.lower())
    except ValueError:
        raise ValueError(
            f"unknown mode {text!r}: one of {', '.join(m.value for m in GameMode)}, or empty"
        ) from None


async def import_players(
    settings: Settings, rows: list[Row], *, by: str = "import", progress: Progress | None = None
) -> Report:
    """Track each row's player unless tracked already as asked (without a mode: tracked at
    all), calling `progress` after each."""
    report = Report()
    keys = [player_key(row.name) for row in rows]
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        found = await (await conn.execute(KNOWN, (keys,))).fetchall()
    known = {key: tracking.Known(GameMode(mode), every, on) for key, mode, every, on in found}
    nc = await natsx.connect_once(settings, "osrs-diff-import")
    try:
        js = nc.jetstream()
        await natsx.declare(js, settings)
        cooldowns = await tracking.cooldown_bucket(js, settings)
        for done, row in enumerate(rows, 1):
            key = player_key(row.name)
            before = known.get(key)
            tracked = before is not None and before.tracked
            event = await tracking.track(
                js,
                cooldowns,
                display_name=row.name,
                mode=row.mode,
                # Its interval stays: an import adds players, it does not reschedule them.
                interval_s=before.interval_s if tracked else settings.fetch_interval,
                known=before,
                by=by,
                cooldown_s=settings.refresh_cooldown,
            )
            if event is None:
                report.already.append(key)
            elif tracked:
                report.changed.append(key)
            else:
                report.added.append(key)
            if progress:
                progress(done, len(rows))
    finally:
        await nc.drain()
    return report
