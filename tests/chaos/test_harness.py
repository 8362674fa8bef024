"""The chaos checks themselves can fail: a wrong value, a slow recovery, an unclean stop."""

from __future__ import annotations

import httpx

from tests.chaos.checks import compare
from tests.chaos.report import KILL, TERM, Fault

BOARD = {
    "skills": [{"name": "Attack", "rank": 5, "level": 99, "xp": 13_034_431}],
    "activities": [
        {"name": "Zulrah", "rank": 9, "score": 40},
        {"name": "Vorkath", "rank": -1, "score": -1},
    ],
}
SHOWN = {
    "last_outcome": "changed",
    "skills": {"attack": {"rank": 7, "level": 99, "xp": 13_034_431}},
    "activities": {"zulrah": {"rank": 10, "score": 40}},
}


def _answer(status: int, body: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json=body if body is not None else {"detail": "nope"})


def test_compare_ignores_ranks_and_unranked_entries_but_not_values():
    assert compare(_answer(200, BOARD), _answer(200, SHOWN)) == ""
    behind = {**SHOWN, "activities": {"zulrah": {"rank": 10, "score": 39}}}
    assert "Zulrah score 39 != 40" in compare(_answer(200, BOARD), _answer(200, behind))
    no_xp = {**SHOWN, "skills": {}}
    assert "Attack" in compare(_answer(200, BOARD), _answer(200, no_xp))
    assert "API answered 404" in compare(_answer(200, BOARD), _answer(404))


def test_compare_wants_not_found_for_a_player_off_the_hiscores():
    assert compare(_answer(404), _answer(200, {**SHOWN, "last_outcome": "not_found"})) == ""
    assert "API says changed" in compare(_answer(404), _answer(200, SHOWN))


def test_a_fault_is_ok_only_when_recovered_in_time_and_stopped_cleanly():
    assert Fault(1, "api", KILL, 0, 0, recovered_s=9.9).ok
    assert not Fault(1, "api", KILL, 0, 0, recovered_s=10.1).ok
    assert not Fault(1, "api", KILL, 0, 0, recovered_s=None).ok
    assert Fault(1, "api", TERM, 0, 0, recovered_s=1, exit_code=0).ok
    assert not Fault(1, "api", TERM, 0, 0, recovered_s=1, exit_code=1).ok
    assert not Fault(1, "api", TERM, 0, 0, recovered_s=1, exit_code=None).ok
