"""The two hiscores payloads, `index_lite.json` and `index_lite.ws`, built from one state."""

from __future__ import annotations

import msgspec


# gc=False: rows hold only ints and strings, and thousands of them sit in caches.
class SkillRow(msgspec.Struct, gc=False):
    """One skill entry; field order is the JSON key order the real API uses."""

    id: int
    name: str
    rank: int
    level: int
    xp: int


class ActivityRow(msgspec.Struct, gc=False):
    id: int
    name: str
    rank: int
    score: int


class HiscoresState(msgspec.Struct):
    """What a board shows for one player at one moment, unranked entries already masked."""

    name: str
    skills: list[SkillRow]
    activities: list[ActivityRow]


_encoder = msgspec.json.Encoder()


def to_json(state: HiscoresState) -> bytes:
    """`{"name":..,"skills":[..],"activities":[..]}`, compact like the real API."""
    return _encoder.encode(state)


def to_csv(state: HiscoresState) -> bytes:
    """One line per entry, skills `rank,level,xp`, activities `rank,score`, trailing newline."""
    lines = [f"{s.rank},{s.level},{s.xp}" for s in state.skills]
    lines.extend(f"{a.rank},{a.score}" for a in state.activities)
    lines.append("")
    return "\n".join(lines).encode("ascii")
