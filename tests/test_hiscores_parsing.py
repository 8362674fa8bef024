import json
from pathlib import Path

import httpx
import pytest

from services.fetcher.client import classify
from services.fetcher.hiscores import MalformedHiscores, parse_json, payload_hash
from shared.events import FetchOutcome

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
    more_xp = json.loads(MID)
    more_xp["skills"][1]["xp"] += 1
    more_score = json.loads(MID)
    more_score["activities"][-1]["score"] += 1

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
