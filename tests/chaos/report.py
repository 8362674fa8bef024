"""What a chaos run found: the faults, how soon the flow moved again after each, the checks
against the truth; and the table of it all."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.chaos.stack import Size

RECOVERY_BOUND_S = 10.0  # the bar: back within 10 s of the dependency
KILL, TERM = "kill -9", "SIGTERM"  # a crash; a rolling restart's stop


@dataclass
class Fault:
    number: int
    target: str
    how: str  # KILL or TERM
    at_s: float  # since the faults began
    down_s: float  # from the kill until it was back
    recovered_s: float | None = None  # from back until the flow moved again; None: never
    waiting_for: str = ""  # what moved last, or what was still missing when it gave up
    exit_code: int | None = None  # of a service stopped with SIGTERM: 0, within its grace

    @property
    def ok(self) -> bool:
        clean = self.how == KILL or self.exit_code == 0
        return clean and self.recovered_s is not None and self.recovered_s <= RECOVERY_BOUND_S


@dataclass(frozen=True)
class Marks:
    status: int  # OSRS_STATUS's last sequence
    scheduled: float  # the scheduler process's osrs_fetches_scheduled_total


@dataclass
class Check:
    what: str
    expected: str
    observed: str
    ok: bool


@dataclass
class Report:
    size: Size
    seed: int
    faults: list[Fault] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        faults_ok = all(f.ok for f in self.faults)
        return faults_ok and all(c.ok for c in self.checks) and not self.crashes

    def table(self) -> str:
        lines = [
            f"Chaos run: {self.size.players} players fetched every {self.size.interval_s} s, "
            f"progress every {self.size.tick_s} s, {len(self.faults)} faults, seed {self.seed}",
            "",
            "| # | at (s) | fault | down (s) | flowing again after (s) | moved last | ok |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in self.faults:
            recovered = "never" if f.recovered_s is None else f"{f.recovered_s:.1f}"
            exited = "" if f.exit_code is None else f" (exit {f.exit_code})"
            lines.append(
                f"| {f.number} | {f.at_s:.0f} | {f.how} {f.target}{exited} | {f.down_s:.1f} | "
                f"{recovered} | {f.waiting_for} | "
                f"{'yes' if f.ok else 'NO'} |"
            )
        lines += ["", "| check | expected | observed | ok |", "|---|---|---|---|"]
        for c in self.checks:
            lines.append(f"| {c.what} | {c.expected} | {c.observed} | {'yes' if c.ok else 'NO'} |")
        if self.crashes:
            lines += ["", "Unexpected exits (restarted by the harness):", *self.crashes]
        if self.figures:
            lines += ["", ", ".join(f"{k} {v:g}" for k, v in self.figures.items())]
        return "\n".join(lines)
