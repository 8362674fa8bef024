"""The hiscores parser and the payload hash that decides "changed"."""

from __future__ import annotations

import hashlib

import msgspec

from shared.events import ActivityEntry, SkillEntry
from shared.metrics import SKILL_NAMES


class MalformedHiscores(ValueError):
    """The body is not a hiscores payload; the message says precisely why."""


class Hiscores(msgspec.Struct, frozen=True):
    skills: tuple[SkillEntry, ...]
    activities: tuple[ActivityEntry, ...]
    name: str | None = None


class _Payload(msgspec.Struct):
    skills: list[SkillEntry]
    activities: list[ActivityEntry]
    name: str | None = None


_decoder = msgspec.json.Decoder(_Payload)


def parse_json(body: bytes) -> Hiscores:
    """Parse `index_lite.json`, matching entries by name (never by position).

    Unknown names are kept: they become new metrics downstream. A known skill missing from the
    payload is a layout change to report, not a zero."""
    try:
        payload = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise MalformedHiscores(f"unexpected JSON shape: {exc}") from None
    except msgspec.DecodeError as exc:
        raise MalformedHiscores(f"not JSON: {exc}") from None
    _check_unique("skill", [s.name for s in payload.skills])
    _check_unique("activity", [a.name for a in payload.activities])
    present = {s.name for s in payload.skills}
    missing = [name for name in SKILL_NAMES if name not in present]
    if missing:
        raise MalformedHiscores(f"skills missing from the payload: {', '.join(missing)}")
    return Hiscores(tuple(payload.skills), tuple(payload.activities), payload.name)


def _check_unique(kind: str, names: list[str]) -> None:
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise MalformedHiscores(f"{kind} names appear twice: {', '.join(dupes)}")


def payload_hash(skills, activities) -> str:
    """blake2b-128 over every entry's name, level, xp and score, sorted by name. Ranks are left
    out: they drift daily for players who did not play."""
    lines = [f"s\x1f{s.name}\x1f{s.level}\x1f{s.xp}" for s in skills]
    lines += [f"a\x1f{a.name}\x1f{a.score}" for a in activities]
    lines.sort(key=lambda line: line[2:])
    return hashlib.blake2b("\n".join(lines).encode(), digest_size=16).hexdigest()
