"""Chaos: kill -9 of every service, of nats-server and of Postgres, in a random order, while
the simulated players are fetched with real progress; then everything osrs-diff stored and
published is compared with the simulator's truth (see harness.py for what is checked).

`make test` runs the short variant (600 players, each target killed once); `make chaos` the
full one (2,000 players, each target killed three times) and prints its table. A failing run
prints its seed: `OSRS_CHAOS_SEED=<seed> make chaos` replays the same order of faults."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.chaos.harness import run_chaos
from tests.chaos.report import Report
from tests.chaos.stack import FULL, SHORT, Size


def _run(tmp_path: Path, size: Size) -> Report:
    report = run_chaos(tmp_path, size)
    table = report.table()
    print("\n" + table)
    if out := os.environ.get("OSRS_CHAOS_REPORT"):
        Path(out).write_text(table + "\n")
    if not report.ok:  # the services' logs, kept where pytest's tmp clean-up does not reach
        kept = Path("chaos-logs") / str(report.seed)
        kept.mkdir(parents=True, exist_ok=True)
        for log in tmp_path.glob("*.log"):
            shutil.copy(log, kept)
        print(f"logs of the failed run: {kept}")
    return report


@pytest.mark.timeout(420)
def test_chaos_short(tmp_path):
    report = _run(tmp_path, SHORT)
    assert report.ok, report.table()


@pytest.mark.timeout(1500)
def test_chaos_full(tmp_path):
    if not os.environ.get("OSRS_CHAOS"):
        pytest.skip("the full chaos run (about 5 min): `make chaos`")
    report = _run(tmp_path, FULL)
    assert report.ok, report.table()
