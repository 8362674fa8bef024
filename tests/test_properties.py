"""Invariants, over generated payloads and names (hypothesis)."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from services.fetcher.hiscores import parse_csv, parse_json, payload_hash
from shared.metrics import ACTIVITY_NAMES, SKILL_NAMES
from shared.players import player_key
from shared.xp import MAX_SKILL_XP, level

LEVELLED = [n for n in SKILL_NAMES if n != "Overall"]
ranks = st.one_of(st.just(-1), st.integers(1, 2_000_000))
skill_xp = st.one_of(st.just(-1), st.integers(0, MAX_SKILL_XP))
scores = st.one_of(st.just(-1), st.integers(0, 100_000))


@st.composite
def payloads(draw) -> dict:
    """A consistent payload: levels from the xp table, Overall the sum of the skills."""
    skills = []
    for name in LEVELLED:
        xp = draw(skill_xp)
        rank = -1 if xp == -1 else draw(st.integers(1, 2_000_000))
        skills.append({"name": name, "rank": rank, "level": level(xp), "xp": xp})
    overall = {
        "name": "Overall",
        "rank": draw(st.integers(1, 2_000_000)),
        "level": sum(s["level"] for s in skills),
        "xp": sum(max(s["xp"], 0) for s in skills),
    }
    activities = []
    for name in ACTIVITY_NAMES:
        score = draw(scores)
        activities.append(
            {
                "name": name,
                "rank": -1 if score == -1 else draw(st.integers(1, 2_000_000)),
                "score": score,
            }
        )
    return {"skills": [overall, *skills], "activities": activities}


def as_json(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def as_csv(payload: dict) -> bytes:
    lines = [f"{s['rank']},{s['level']},{s['xp']}" for s in payload["skills"]]
    lines += [f"{a['rank']},{a['score']}" for a in payload["activities"]]
    return ("\n".join(lines) + "\n").encode()


def digest(payload: dict) -> str:
    parsed = parse_json(as_json(payload))
    return payload_hash(parsed.skills, parsed.activities)


@settings(max_examples=60, deadline=None)
@given(payloads(), st.data())
def test_a_rank_only_change_keeps_the_hash(payload, data):
    before = digest(payload)
    ranked = [e for e in payload["skills"] + payload["activities"] if e["rank"] != -1]
    entry = ranked[data.draw(st.integers(0, len(ranked) - 1))]  # Overall is always ranked
    entry["rank"] = data.draw(st.integers(1, 2_000_000).filter(lambda r: r != entry["rank"]))
    assert digest(payload) == before


@settings(max_examples=60, deadline=None)
@given(payloads(), st.data())
def test_any_xp_level_or_score_change_alters_the_hash(payload, data):
    before = digest(payload)
    if data.draw(st.booleans()):
        activity = payload["activities"][data.draw(st.integers(0, len(ACTIVITY_NAMES) - 1))]
        activity["score"] = activity["score"] + data.draw(st.integers(1, 1000))
        activity["rank"] = max(activity["rank"], 1)
    else:
        skill = payload["skills"][data.draw(st.integers(1, len(LEVELLED)))]
        gained = max(skill["xp"], 0) + data.draw(st.integers(1, 1_000_000))
        if gained > MAX_SKILL_XP:
            return
        skill.update(xp=gained, level=level(gained), rank=max(skill["rank"], 1))
        overall = payload["skills"][0]
        overall["xp"] = sum(max(s["xp"], 0) for s in payload["skills"][1:])
        overall["level"] = sum(s["level"] for s in payload["skills"][1:])
    assert digest(payload) != before


@settings(max_examples=60, deadline=None)
@given(payloads())
def test_the_csv_and_the_json_of_one_payload_parse_to_the_same_observation(payload):
    from_json = parse_json(as_json(payload))
    from_csv = parse_csv(as_csv(payload))
    assert from_csv.skills == from_json.skills
    assert from_csv.activities == from_json.activities


names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-",
    min_size=1,
    max_size=12,
).filter(lambda n: n.strip())


@given(names)
def test_key_folding_is_idempotent(name):
    assert player_key(player_key(name)) == player_key(name)


@given(names, st.data())
def test_key_folding_ignores_case_and_space_underscore_dash(name, data):
    respelled = "".join(
        data.draw(st.sampled_from(" _-"))
        if c in " _-"
        else data.draw(st.sampled_from([c.lower(), c.upper()]))
        for c in name
    )
    if respelled.strip() == respelled and name.strip() == name:
        assert player_key(respelled) == player_key(name)
