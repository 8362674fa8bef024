"""The chaos harness: the whole product as processes over a nats-server (file storage) and a
Postgres of its own, the hiscores simulator with real progress, and faults: kill -9 of a
service (restarted at once, as Kubernetes or `osrs-diff up` would), of nats-server or of
Postgres (back after a short outage); then a rolling restart (SIGTERM, then a new process) of
each service in turn. After the faults, the simulator's clock stops and the
harness compares what osrs-diff stored and published with the simulator's truth.

What "recovered" means for a fault: from the moment the killed thing is back (the service
respawned, the server accepting connections again), the whole flow moves again: the scheduler
publishes a new command, a fetcher publishes a new outcome, the projector applies an outcome
published after that moment, the API answers an authenticated read, and every worker's /ready
says 200. Nothing but the killed process is restarted by the harness: every other service has
to find its way back by itself (an unexpected exit is recorded as a crash and fails the run).

"No command lost" is checked against a ledger: a mirror of OSRS_STATUS (limits retention, all
messages, on the same file storage) that keeps every FetchCompleted; each names the command it
served (`request_id`). Every command OSRS_CMD ever stored must have a final outcome there or a
dead letter."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
import psycopg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig, StreamSource

from shared import nats as natsx
from shared import subjects
from shared.events import PlayerTracked, encode
from shared.modes import GameMode
from shared.settings import Settings
from tests.chaos.checks import LEDGER, Checks
from tests.chaos.report import KILL, RECOVERY_BOUND_S, TERM, Check, Fault, Marks, Report
from tests.chaos.stack import PASSWORD, SERVICES, USER, Size, Stack, key_of, name_of

TARGETS = (*SERVICES, "nats", "postgres")
RECOVERY_WAIT_S = 40.0  # how long the harness waits before calling a fault unrecovered


async def _quiet(exc: Exception) -> None:
    pass


async def _quiet_event() -> None:
    pass


class Observer:
    """The harness's own view: a NATS connection that reconnects forever, Postgres queries on
    fresh connections, HTTP clients for the API, the simulator and the workers' /ready."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.nc: nats.NATS | None = None
        self.api = httpx.AsyncClient(base_url=stack.api_url, timeout=5)
        self.sim = httpx.AsyncClient(base_url=stack.sim_url, timeout=10)
        self.http = httpx.AsyncClient(timeout=2)

    async def open(self) -> None:
        self.nc = await nats.connect(
            self.stack.nats.url,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.1,
            allow_reconnect=True,
            error_cb=_quiet,  # the outages are on purpose: no tracebacks in the output
            disconnected_cb=_quiet_event,
        )
        js = self.js
        await natsx.declare(js, Settings(nats_url=self.stack.nats.url))
        await js.add_stream(
            StreamConfig(name=LEDGER, mirror=StreamSource(name=subjects.STATUS_STREAM))
        )

    async def close(self) -> None:
        for client in (self.api, self.sim, self.http):
            await client.aclose()
        if self.nc is not None:
            await self.nc.close()

    @property
    def js(self):
        return self.nc.jetstream(timeout=2)

    async def last_seq(self, stream: str) -> int:
        return (await self.js.stream_info(stream)).state.last_seq

    async def query(self, sql: str, *params) -> list[tuple]:
        async with await psycopg.AsyncConnection.connect(
            self.stack.postgres.url, connect_timeout=2
        ) as conn:
            return await (await conn.execute(sql, params)).fetchall()

    async def login(self) -> None:
        login = {"username": USER, "password": PASSWORD}
        answer = await self.api.post("/v1/auth/token", json=login)
        answer.raise_for_status()
        self.api.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    async def track(self, players: int) -> None:
        """PlayerTracked for every simulated player, straight into the log (as an import)."""
        at = datetime.now(UTC) - timedelta(seconds=self.stack.size.interval_s)
        for start in range(1, players + 1, 500):
            batch = []
            for i in range(start, min(start + 500, players + 1)):
                event = PlayerTracked(
                    player_key=key_of(i),
                    display_name=name_of(i),
                    mode=GameMode.REGULAR,
                    interval_s=self.stack.size.interval_s,
                    by="chaos",
                    at=at,
                )
                batch.append(
                    self.js.publish(
                        subjects.PLAYER_TRACKED,
                        encode(event),
                        stream=subjects.EVT_STREAM,
                        headers={"Nats-Msg-Id": event.id},
                    )
                )
            await asyncio.gather(*batch)

    # -- "is it flowing?" ---------------------------------------------------------------

    async def marks(self) -> Marks:
        """Where the flow stands now; raises while NATS does not answer."""
        return Marks(
            await self.last_seq(subjects.STATUS_STREAM),
            await self.scheduled(),
        )

    async def scheduled(self) -> float:
        """Commands the running scheduler process has published (0 before it answers)."""
        port = self.stack.metrics_ports["scheduler"]
        try:
            text = (await self.http.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.HTTPError:
            return 0.0
        for line in text.splitlines():
            if line.startswith("osrs_fetches_scheduled_total "):
                return float(line.split()[1])
        return 0.0

    async def missing(self, marks: Marks) -> list[str]:
        """What has not moved yet since `marks` (empty: the whole flow moves)."""
        waiting = []
        if await self.scheduled() <= marks.scheduled:
            waiting.append("the scheduler publishing")
        try:
            if await self.last_seq(subjects.STATUS_STREAM) <= marks.status:
                waiting.append("a new fetch outcome")
        except Exception:  # noqa: BLE001 - NATS not answering yet
            waiting.append("nats")
        try:
            rows = await self.query(
                "SELECT last_seq FROM projector_checkpoints WHERE stream = %s",
                subjects.STATUS_STREAM,
            )
            if not rows or rows[0][0] <= marks.status:
                waiting.append("the projector applying a new outcome")
        except Exception:  # noqa: BLE001
            waiting.append("postgres")
        try:
            answer = await self.api.get(f"/v1/players/{name_of(1)}")
            if answer.status_code != 200:
                waiting.append(f"api ({answer.status_code})")
            elif (await self.http.get(f"{self.stack.api_url}/health/ready")).status_code != 200:
                waiting.append("api ready")
        except httpx.HTTPError:
            waiting.append("api")
        for name, port in self.stack.metrics_ports.items():
            try:
                ready = await self.http.get(f"http://127.0.0.1:{port}/ready")
                if ready.status_code != 200:
                    waiting.append(f"{name} ready")
            except httpx.HTTPError:
                waiting.append(f"{name} ready")
        return waiting

    async def until_flowing(self, marks: Marks, back: float) -> tuple[float | None, str]:
        """Seconds from `back` until nothing is missing (None past RECOVERY_WAIT_S), and what
        moved last: what was still missing at the last look before, and since when."""
        waiting: list[str] = []
        since: dict[str, float] = {}  # what is missing: how long after `back` it last was
        while time.monotonic() - back < RECOVERY_WAIT_S:
            self.stack.supervise()
            waiting = await self.missing(marks)
            now = time.monotonic() - back
            if not waiting:
                last = sorted(since.items(), key=lambda item: item[1])[-2:]
                return now, ", ".join(f"{what} until {at:.1f} s" for what, at in last)
            since.update(dict.fromkeys(waiting, now))
            await asyncio.sleep(0.1)
        return None, "still waiting for " + ", ".join(waiting)

    # -- reading whole streams ----------------------------------------------------------

    async def messages(self, stream: str, subject: str) -> list:
        """Every message of `stream` on `subject`, in order (an ephemeral consumer, no acks)."""
        if not (await self.js.stream_info(stream)).state.messages:
            return []
        sub = await self.js.pull_subscribe(
            subject,
            stream=stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=60
            ),
        )
        got: list = []
        try:
            while True:
                try:
                    batch = await sub.fetch(1000, timeout=2)
                except nats.errors.TimeoutError:
                    break  # nothing more on `subject`
                got += batch
                if batch[-1].metadata.num_pending == 0:
                    break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return got


async def until(what: str, check, timeout_s: float, stack: Stack) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        stack.supervise()
        if time.monotonic() > deadline:
            raise AssertionError(f"chaos: timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.25)


class Chaos:
    def __init__(self, folder: Path, size: Size, seed: int) -> None:
        self.size = size
        self.rng = random.Random(seed)
        self.stack = Stack(folder, size, seed)
        self.observer: Observer  # once the stack knows its URLs
        self.report = Report(size, seed)
        self.refreshes: Counter[int] = Counter()

    async def run(self) -> Report:
        started = time.monotonic()
        self.stack.start()
        self.observer = Observer(self.stack)
        try:
            await self.observer.open()
            await self.observer.track(self.size.players)
            for name in SERVICES:
                self.stack.spawn(name)
            await self.warm_up()
            refresher = asyncio.create_task(self.refresh_now_and_then())
            try:
                await self.inject_faults()
            finally:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
            await self.settle()
            await self.verify()
        finally:
            self.report.crashes = self.stack.crashes
            await self.observer.close()
            self.stack.stop()
        self.report.figures["run_s"] = round(time.monotonic() - started)
        return self.report

    async def warm_up(self) -> None:
        """Every player fetched and projected once, so the faults hit a stack in full flow."""
        observer = self.observer

        async def api_up() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return (await observer.http.get(f"{self.stack.api_url}/health/ready")).is_success
            return False

        await until("the api", api_up, 60, self.stack)
        await observer.login()

        async def all_fetched() -> bool:
            rows = await observer.query("SELECT count(*) FROM fetch_status")
            return rows[0][0] >= self.size.players

        timeout_s = 120 + self.size.players / 20
        await until("every player fetched once", all_fetched, timeout_s, self.stack)

    async def refresh_now_and_then(self) -> None:
        """Manual refreshes through the API while the faults happen: another way in to OSRS_CMD."""
        while True:
            await asyncio.sleep(0.5)
            index = self.rng.randint(1, self.size.players)
            with contextlib.suppress(httpx.HTTPError):
                answer = await self.observer.api.post(f"/v1/players/{name_of(index)}/refresh")
                self.refreshes[answer.status_code] += 1

    async def inject_faults(self) -> None:
        """kill -9 of every target `rounds` times in a random order, then a rolling restart:
        each service in turn stopped with SIGTERM (it must exit 0) and started again."""
        targets = [(t, KILL) for _ in range(self.size.rounds) for t in TARGETS]
        self.rng.shuffle(targets)
        targets += [(name, TERM) for name in SERVICES]
        began = time.monotonic()
        for number, (target, how) in enumerate(targets, 1):
            await asyncio.sleep(self.rng.uniform(*self.size.gap_s))
            at = time.monotonic()
            fault = Fault(number, target, how, at - began, 0.0)
            if how == TERM:
                fault.exit_code = await asyncio.to_thread(self.stack.stop_service, target)
            else:
                await asyncio.to_thread(self.kill, target)
            if target in ("nats", "postgres"):
                await asyncio.sleep(self.rng.uniform(*self.size.outage_s))
            await asyncio.to_thread(self.revive, target)
            back = time.monotonic()
            fault.down_s = back - at
            # From here on: what moves was done by the stack as it is after the fault.
            marks = await self.wait_for_marks()
            fault.recovered_s, fault.waiting_for = await self.observer.until_flowing(marks, back)
            self.report.faults.append(fault)

    async def wait_for_marks(self) -> Marks:
        while True:
            with contextlib.suppress(Exception):
                return await self.observer.marks()
            await asyncio.sleep(0.05)

    def kill(self, target: str) -> None:
        if target == "nats":
            self.stack.kill_nats()
        elif target == "postgres":
            self.stack.kill_postgres()
        else:
            self.stack.kill_service(target)

    def revive(self, target: str) -> None:
        if target == "nats":
            self.stack.start_nats()
        elif target == "postgres":
            self.stack.start_postgres()
        else:
            self.stack.spawn(target)

    async def settle(self) -> None:
        """Stop time, let every player be fetched once more, then let the pipeline drain."""
        observer = self.observer
        frozen = await observer.sim.put("/_sim/clock", json={"frozen": True})
        frozen.raise_for_status()
        after = datetime.now(UTC) + timedelta(seconds=1)  # answers computed after the freeze

        async def all_fetched_since() -> bool:
            rows = await observer.query(
                "SELECT count(*) FROM fetch_status WHERE fetched_at > %s", after
            )
            return rows[0][0] >= self.size.players

        await until(
            "every player fetched after the freeze",
            all_fetched_since,
            3 * self.size.interval_s + 60,
            self.stack,
        )
        self.stack.procs["scheduler"].send_signal(signal.SIGTERM)  # no new commands
        self.stack.killing.add("scheduler")

        async def drained() -> bool:
            cmd = await observer.js.stream_info(subjects.CMD_STREAM)
            if cmd.state.messages:
                return False
            rows = await observer.query("SELECT stream, last_seq FROM projector_checkpoints")
            checkpoints = dict(rows)
            for stream in (subjects.EVT_STREAM, subjects.STATUS_STREAM):
                if checkpoints.get(stream, 0) < await observer.last_seq(stream):
                    return False
            unsent = await observer.query("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            return unsent[0][0] == 0

        await until("the pipeline drained", drained, 120, self.stack)

    # -- the checks ---------------------------------------------------------------------

    def check(self, what: str, expected: str, observed: str, ok: bool) -> None:
        self.report.checks.append(Check(what, expected, observed, ok))

    async def verify(self) -> None:
        faults = self.report.faults
        slow = [f"#{f.number} {f.target}" for f in faults if not f.ok]
        self.check(
            f"every fault: flowing again within {RECOVERY_BOUND_S:.0f} s",
            f"{len(faults)} of {len(faults)}",
            f"{len(faults) - len(slow)} of {len(faults)}" + (f" (not {slow})" if slow else ""),
            not slow,
        )
        crashes = len(self.stack.crashes)
        self.check("no service exited unkilled", "0", str(crashes), crashes == 0)
        checks = Checks(self.observer, self.size.players, self.report)
        await checks.latest_values()
        await checks.progress(await checks.observations())
        await checks.commands()
        self.report.figures["manual_refreshes"] = sum(self.refreshes.values())


def run_chaos(folder: Path, size: Size) -> Report:
    """One run; the seed (faults' order, pauses, outages, the population) is random unless
    OSRS_CHAOS_SEED sets it, and is in the report so that a failing run can be replayed."""
    seed = int(os.environ.get("OSRS_CHAOS_SEED") or random.randrange(10**6))
    return asyncio.run(Chaos(folder, size, seed).run())
