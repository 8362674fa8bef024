"""The activity layout the simulator serves, and a game update that inserts new bosses into it.

Jagex puts a new boss in the middle of the list and renumbers every id after it; the CSV gets
an extra line there, so a parser that reads by position is off by one from that line on."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.metrics import ACTIVITY_NAMES
from sim.payload import ActivityRow

MAX_NAME = 64


class LayoutError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Layout:
    new_bosses: tuple[tuple[str, str], ...] = ()  # (name, the entry it comes right after)
    names: tuple[str, ...] = field(default=ACTIVITY_NAMES, compare=False)

    @property
    def changed(self) -> bool:
        return bool(self.new_bosses)


BASE_LAYOUT = Layout()


def make_layout(new_bosses: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> Layout:
    """The layout after inserting each new boss, in order, right after its `after` entry (which
    may be a boss inserted earlier in the list)."""
    names = list(ACTIVITY_NAMES)
    for name, after in new_bosses:
        if not name.strip() or len(name) > MAX_NAME or not name.isprintable():
            raise LayoutError(f"a new boss needs a printable name of 1-{MAX_NAME} characters")
        if name in names:
            raise LayoutError(f"{name!r} is already on the hiscores")
        if after not in names:
            raise LayoutError(f"no hiscores entry {after!r} to insert {name!r} after")
        names.insert(names.index(after) + 1, name)
    return Layout(tuple(new_bosses), tuple(names))


def lay_out(
    layout: Layout, rows: list[ActivityRow], extra: dict[str, ActivityRow]
) -> list[ActivityRow]:
    """`rows` in the base layout plus the new bosses' rows, in the layout's order, with the ids
    renumbered as Jagex does (the id is only the position)."""
    if not layout.changed:
        return rows
    by_name = {row.name: row for row in rows}
    out = []
    for aid, name in enumerate(layout.names):
        row = extra.get(name) or by_name[name]
        out.append(ActivityRow(aid, name, row.rank, row.score))
    return out
