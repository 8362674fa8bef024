import json
import re
from pathlib import Path

import httpx
import pytest

from services.fetcher.client import classify
from services.fetcher.hiscores import (
    MalformedHiscores,
    NotHiscoresData,
    parse_csv,
    parse_json,
    payload_hash,
)
from shared.events import FetchOutcome
from tests.hiscores_double import with_gain

DATA = Path(__file__).parent / "data"
MID = (DATA / "synthetic_mid.index_lite.json").read_bytes()
LOW = (DATA / "synthetic_low_unranked.index_lite.json").read_bytes()


def _response(status: int, body: bytes, content_type: str = "application/json") -> httpx.Response:
    return httpx.Response(
        status,
        content=body,
        headers={"content-type": content_type},
        request=httpx.Request("GET", "http://hiscores/m=hiscore_oldschool/index_lite.json"),
    )


def test_parses_entries_by_name():
    parsed = parse_json(MID)
    assert parsed.name == "Synth Mid"
    assert len(parsed.skills) == 25 and len(parsed.activities) == 91
    overall = parsed.skills[0]
    assert (overall.name, overall.level, overall.xp) == ("Overall", 1751, 32968809)


def test_entries_are_matched_by_name_not_position():
    payload = json.loads(MID)
    payload["activities"].reverse()
    payload["skills"].reverse()
    shuffled = parse_json(json.dumps(payload).encode())
    original = parse_json(MID)
    assert payload_hash(shuffled.skills, shuffled.activities) == payload_hash(
        original.skills, original.activities
    )


def test_an_unknown_entry_is_kept():
    payload = json.loads(MID)
    payload["activities"].insert(40, {"id": 40, "name": "Brand New Boss", "rank": 5, "score": 7})
    parsed = parse_json(json.dumps(payload).encode())
    assert any(a.name == "Brand New Boss" and a.score == 7 for a in parsed.activities)


def test_a_missing_known_skill_is_malformed():
    payload = json.loads(MID)
    payload["skills"] = [s for s in payload["skills"] if s["name"] != "Sailing"]
    with pytest.raises(MalformedHiscores, match="Sailing"):
        parse_json(json.dumps(payload).encode())


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b'{"skills": "x", "activities": []}',
        b'{"skills": [{"name": "Overall", "rank": "1"}], "activities": []}',
    ],
)
def test_garbage_is_malformed(body):
    with pytest.raises(MalformedHiscores):
        parse_json(body)


def test_unranked_entries_parse():
    parsed = parse_json(LOW)
    assert any(s.rank == -1 for s in parsed.skills)
    assert any(a.rank == -1 and a.score == -1 for a in parsed.activities)


def test_hash_ignores_ranks_but_not_xp_or_scores():
    base = json.loads(MID)
    reranked = json.loads(MID)
    for entry in reranked["skills"] + reranked["activities"]:
        entry["rank"] = entry["rank"] + 1000 if entry["rank"] > 0 else entry["rank"]
    more_xp = json.loads(with_gain(MID, {"Attack": 1}))
    more_score = json.loads(with_gain(MID, {"Zulrah": 1}))

    def h(payload):
        parsed = parse_json(json.dumps(payload).encode())
        return payload_hash(parsed.skills, parsed.activities)

    assert h(base) == h(reranked)
    assert h(base) != h(more_xp)
    assert h(base) != h(more_score)
    assert len(h(base)) == 32


def test_classify_outcomes():
    assert classify(_response(200, MID)).hiscores is not None
    assert (
        classify(_response(404, (DATA / "not_found.html").read_bytes(), "text/html")).outcome
        is FetchOutcome.NOT_FOUND
    )
    outage = classify(_response(200, (DATA / "outage_200.html").read_bytes(), "text/html"))
    assert outage.outcome is FetchOutcome.UNAVAILABLE and "HTML" in outage.detail
    limited = _response(429, b"", "text/plain")
    limited.headers["retry-after"] = "7"
    assert classify(limited).outcome is FetchOutcome.RATE_LIMITED
    assert classify(limited).retry_after == 7.0
    assert classify(_response(503, b"")).outcome is FetchOutcome.UNAVAILABLE
    invalid = classify(_response(200, b'{"skills": []}'))
    assert invalid.outcome is FetchOutcome.INVALID and invalid.detail


@pytest.mark.parametrize("sample", ["synthetic_mid", "synthetic_low_unranked"])
def test_the_csv_and_the_json_of_one_payload_parse_alike(sample):
    from_json = parse_json((DATA / f"{sample}.index_lite.json").read_bytes())
    from_csv = parse_csv((DATA / f"{sample}.index_lite.ws").read_bytes())
    assert from_csv.skills == from_json.skills
    assert from_csv.activities == from_json.activities


def test_golden_values_of_the_samples():
    mid = parse_json(MID)
    by_name = {s.name: s for s in mid.skills}
    assert (by_name["Attack"].rank, by_name["Attack"].level, by_name["Attack"].xp) == (
        612904,
        82,
        2514336,
    )
    low = parse_json(LOW)
    overall = low.skills[0]
    assert (overall.level, overall.xp) == (1311, 9495429)
    assert sum(1 for s in low.skills if s.rank == -1) > 0


def test_a_new_boss_mid_list_breaks_the_csv_layout_but_not_the_json():
    lines = (DATA / "synthetic_mid.index_lite.ws").read_text().splitlines()
    lines.insert(25 + 60, "12,3")
    with pytest.raises(MalformedHiscores, match="layout changed: 117 CSV lines"):
        parse_csv("\n".join(lines).encode())


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (lambda p: p["skills"][1].update(xp=200_000_001, level=99), "Attack: xp 200000001 above"),
        (lambda p: p["skills"][1].update(level=100), "Attack: level 100 outside 1-99"),
        (lambda p: p["skills"][1].update(level=50), "Attack: level 50 does not match"),
        (lambda p: p["skills"][0].update(xp=p["skills"][0]["xp"] + 5), "Overall (level 1751, xp"),
        (lambda p: p["skills"][0].update(level=1700), "is not the sum of the skills"),
        (lambda p: p["skills"][2].update(rank=-5), "Defence: rank -5"),
        (lambda p: p["skills"][2].update(xp=-7), "Defence: xp -7 is negative"),
        (lambda p: p["activities"][9].update(score=-2), "score -2 is negative"),
        (lambda p: p["activities"].pop(40), "known activity entries missing"),
        (lambda p: p["skills"].append(dict(p["skills"][3])), "skill names appear twice: Strength"),
    ],
)
def test_impossible_values_are_refused_with_a_precise_detail(change, detail):
    payload = json.loads(MID)
    change(payload)
    with pytest.raises(MalformedHiscores, match=re.escape(detail)):
        parse_json(json.dumps(payload).encode())


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (lambda p: p["skills"][0].update(rank=-1, level=99999), "above the maximum"),
        (lambda p: p["skills"][0].update(rank=-1, xp=4_900_000_000), "above the maximum"),
        (lambda p: p["activities"][9].update(rank=-1, score=123456), "unranked shows rank -1"),
        (lambda p: p["activities"][9].update(rank=10, score=-1), "unranked shows rank -1"),
        (lambda p: p["skills"][5].update(rank=-1), "unranked but shows level"),
        (lambda p: p["skills"][5].update(xp=-1, level=1), "without xp"),
    ],
)
def test_unranked_semantics_are_enforced(change, detail):
    payload = json.loads(MID)
    change(payload)
    with pytest.raises(MalformedHiscores, match=re.escape(detail)):
        parse_json(json.dumps(payload).encode())


def test_unranked_skills_may_leave_overall_above_the_shown_sums_but_not_beyond_them():
    payload = json.loads(LOW)
    payload["skills"][0]["level"] = 1500  # 6 unranked skills may hold up to 588 more levels
    parse_json(json.dumps(payload).encode())
    payload["skills"][0]["level"] = 2376 + 1
    with pytest.raises(MalformedHiscores, match="above the maximum"):
        parse_json(json.dumps(payload).encode())


def test_truncated_json_is_not_data_and_a_truncated_csv_is_a_layout_problem():
    with pytest.raises(NotHiscoresData):
        parse_json(MID[: len(MID) // 2])
    csv = (DATA / "synthetic_mid.index_lite.ws").read_bytes()
    with pytest.raises(MalformedHiscores):
        parse_csv(csv[: len(csv) // 2])
    with pytest.raises(NotHiscoresData):
        parse_csv((DATA / "outage_200.html").read_bytes())
