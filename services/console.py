"""What the command line shows: progress bars and plain tables."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

Progress = Callable[[int, int], None]  # (done, total)


def progress_bar(what: str = "rebuild", unit: str = "events", out=sys.stderr) -> Progress:
    """A one-line progress bar on a terminal, a line per 10 % otherwise."""
    started = time.monotonic()
    shown = {"tenth": -1}

    def show(done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        rate = done / max(time.monotonic() - started, 1e-6)
        text = f"{what}: {done:,}/{total:,} {unit} ({fraction:.0%}), {rate:,.0f}/s"
        if out.isatty():
            bar = "#" * int(fraction * 30)
            out.write(f"\r[{bar:<30}] {text}")
            out.flush()
        elif int(fraction * 10) > shown["tenth"]:
            shown["tenth"] = int(fraction * 10)
            print(text, file=out, flush=True)

    return show


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns two spaces apart, the header first."""
    cells = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )
