"""The checks at the end of a chaos run, against the simulator's truth (frozen by then) and
the streams: latest values, each payload once, progress events once each, no command lost."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from datetime import datetime

import httpx
import msgspec

from shared import subjects
from shared.events import FetchCompleted, FetchOutcome
from shared.metrics import metric_key
from tests.chaos.report import Check, Report
from tests.chaos.stack import name_of

LEDGER = "CHAOS_STATUS_LEDGER"  # a mirror of OSRS_STATUS keeping every message
TRANSIENT = {FetchOutcome.UNAVAILABLE, FetchOutcome.RATE_LIMITED}


class Checks:
    def __init__(self, observer, players: int, report: Report) -> None:
        self.observer = observer  # harness.Observer
        self.players = players
        self.report = report

    def check(self, what: str, expected: str, observed: str, ok: bool) -> None:
        self.report.checks.append(Check(what, expected, observed, ok))

    async def latest_values(self) -> None:
        """GET /v1/players/{name} of every player against the simulator's (frozen) truth."""
        observer = self.observer
        wrong: list[str] = []
        gate = asyncio.Semaphore(8)

        async def one(index: int) -> None:
            async with gate:
                truth = await observer.sim.get("/_sim/truth", params={"player": name_of(index)})
                shown = await observer.api.get(f"/v1/players/{name_of(index)}")
            problem = compare(truth, shown)
            if problem:
                wrong.append(f"{name_of(index)}: {problem}")

        await asyncio.gather(*(one(i) for i in range(1, self.players + 1)))
        self.check(
            "latest values of every player = the simulator's truth (API)",
            f"{self.players} right",
            f"{self.players - len(wrong)} right" + _some(wrong),
            not wrong,
        )

    async def observations(self) -> dict[str, list[datetime]]:
        """Each distinct payload once in the log and once in Postgres."""
        observer = self.observer
        in_log: Counter[tuple[str, str]] = Counter()
        for msg in await observer.messages(subjects.EVT_STREAM, f"{subjects.OBSERVED_PREFIX}.>"):
            event = json.loads(msg.data)
            in_log[(event["player_key"], event["hash"])] += 1
        repeated = sum(n - 1 for n in in_log.values())
        self.check(
            "each distinct payload published once (OSRS_EVT)",
            "0 repeated",
            f"{repeated} repeated of {sum(in_log.values())}",
            repeated == 0,
        )
        rows = await observer.query(
            "SELECT p.key, o.observed_at FROM observations o JOIN players p ON p.id = o.player_id "
            "ORDER BY p.key, o.observed_at"
        )
        stored: dict[str, list[datetime]] = defaultdict(list)
        for key, at in rows:
            stored[key].append(at)
        per_key_log = Counter(key for key, _ in in_log.elements())
        differ = [k for k in set(per_key_log) | set(stored) if per_key_log[k] != len(stored[k])]
        self.check(
            "each observation stored once (Postgres rows = log, per player)",
            f"{sum(per_key_log.values())} rows",
            f"{len(rows)} rows, {len(differ)} players differ" + _some(differ),
            not differ and len(rows) == sum(per_key_log.values()),
        )
        self.report.figures["observations"] = len(rows)
        return stored

    async def progress(self, stored: dict[str, list[datetime]]) -> None:
        """OSRS_PROGRESS = the outbox, each event once; one `gains` event per observation that
        follows another of the same player."""
        observer = self.observer
        messages = await observer.messages(subjects.PROGRESS_STREAM, "osrs.progress.>")
        ids = Counter((m.headers or {}).get("Nats-Msg-Id") for m in messages)
        repeated = sum(n - 1 for n in ids.values())
        outbox = {str(row[0]) for row in await observer.query("SELECT id FROM outbox")}
        missing = len(outbox - set(ids))
        self.check(
            "progress events: every outbox row published once",
            f"{len(outbox)} events, 0 missing, 0 repeated",
            f"{len(messages)} events, {missing} missing, {repeated} repeated",
            repeated == 0 and missing == 0 and len(messages) == len(outbox),
        )
        gains: dict[str, Counter[datetime]] = defaultdict(Counter)
        for msg in messages:
            if msg.subject.endswith(".gains"):
                event = msgspec.json.decode(msg.data)
                at = datetime.fromisoformat(event["observed_at"])
                gains[event["player_key"]][at] += 1
        wrong = []
        for key in set(stored) | set(gains):
            expected = Counter(stored.get(key, [])[1:])
            if gains.get(key, Counter()) != expected:
                wrong.append(key)
        self.check(
            "a gains event for each observation after a player's first, once",
            f"{sum(max(len(v) - 1, 0) for v in stored.values())}",
            f"{sum(sum(c.values()) for c in gains.values())}, {len(wrong)} players differ"
            + _some(wrong),
            not wrong,
        )
        self.report.figures["progress_events"] = len(messages)

    async def commands(self) -> None:
        observer = self.observer
        cmd = await observer.js.stream_info(subjects.CMD_STREAM)
        commands = cmd.state.last_seq
        finals: Counter[str] = Counter()
        for msg in await observer.messages(LEDGER, f"{subjects.STATUS_PREFIX}.>"):
            completed = msgspec.json.decode(msg.data, type=FetchCompleted)
            if completed.outcome not in TRANSIENT:
                finals[completed.request_id] += 1
        dead = (await observer.js.stream_info(subjects.DEAD_STREAM)).state.messages
        served = len(finals)
        lost = commands - served - dead
        self.check(
            "no command lost: every command stored in OSRS_CMD has a final outcome",
            f"{commands} commands, 0 lost, 0 dead-lettered",
            f"{served} served, {lost} lost, {dead} dead-lettered, {cmd.state.messages} left",
            lost == 0 and dead == 0 and cmd.state.messages == 0,
        )
        twice = sum(n - 1 for n in finals.values())
        self.report.figures["commands"] = commands
        self.report.figures["commands_served_twice"] = twice  # at-least-once: after a kill


def _some(items) -> str:
    """A few of `items` for a table cell ('' when there are none)."""
    return f" (e.g. {sorted(items)[:3]})" if items else ""


def compare(truth: httpx.Response, shown: httpx.Response) -> str:
    """'' when the API shows the truth's levels, xp and scores (ranks drift and are not
    compared), else what differs first."""
    if truth.status_code == 404:
        outcome = shown.json().get("last_outcome") if shown.status_code == 200 else None
        return "" if outcome == "not_found" else f"not on the hiscores, API says {outcome}"
    if shown.status_code != 200:
        return f"API answered {shown.status_code}"
    body, board = shown.json(), truth.json()
    for entry in board["skills"]:
        got = (body.get("skills") or {}).get(metric_key(entry["name"]), {})
        if entry["xp"] >= 0 and (got.get("xp"), got.get("level")) != (entry["xp"], entry["level"]):
            shown_pair, true_pair = (got.get("xp"), got.get("level")), (entry["xp"], entry["level"])
            return f"{entry['name']} xp/level {shown_pair} != {true_pair}"
    for entry in board["activities"]:
        got = (body.get("activities") or {}).get(metric_key(entry["name"]), {})
        if entry["score"] >= 0 and got.get("score") != entry["score"]:
            return f"{entry['name']} score {got.get('score')} != {entry['score']}"
    return ""
