"""A scripted hiscores for handler tests: answers from a queue, then the last answer forever."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from services.fetcher.client import new_http_client
from shared.xp import level

DATA = Path(__file__).parent / "data"
MID = (DATA / "synthetic_mid.index_lite.json").read_bytes()
OUTAGE = (DATA / "outage_200.html").read_bytes()
NOT_FOUND = (DATA / "not_found.html").read_bytes()


class ScriptedHiscores:
    def __init__(self, *answers: tuple) -> None:
        """Each answer: (status, body, content type[, extra headers])."""
        self.answers = list(answers) or [(200, MID, "application/json")]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body, content_type, *extra = (
            self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        )
        headers = {"content-type": content_type, **(extra[0] if extra else {})}
        return httpx.Response(status, content=body, headers=headers)

    def client(self) -> httpx.AsyncClient:
        return new_http_client(transport=httpx.MockTransport(self))


def with_gain(payload: bytes, gains: dict[str, int]) -> bytes:
    """The payload after a player gained xp (skills) or score (activities), Overall kept
    consistent: what the hiscores would show next."""
    data = json.loads(payload)
    skills = {s["name"]: s for s in data["skills"]}
    activities = {a["name"]: a for a in data["activities"]}
    for name, amount in gains.items():
        if name in skills:
            skill = skills[name]
            skill["xp"] = max(skill["xp"], 0) + amount
            skill["level"] = level(skill["xp"])
        else:
            activities[name]["score"] = max(activities[name]["score"], 0) + amount
    overall = skills["Overall"]
    others = [s for name, s in skills.items() if name != "Overall"]
    overall["xp"] = sum(max(s["xp"], 0) for s in others)
    overall["level"] = sum(s["level"] for s in others)
    return json.dumps(data).encode()
