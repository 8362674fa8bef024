"""Game modes (hiscores boards) and the hiscores module that serves each."""

from __future__ import annotations

import enum


class GameMode(enum.StrEnum):
    REGULAR = "regular"
    IRONMAN = "ironman"
    HARDCORE = "hardcore"
    ULTIMATE = "ultimate"
    DEADMAN = "deadman"
    SEASONAL = "seasonal"
    TOURNAMENT = "tournament"
    FRESH_START = "fresh_start"
    DEFENCE_PURE = "defence_pure"
    SKILLER = "skiller"


MODULES: dict[GameMode, str] = {
    GameMode.REGULAR: "hiscore_oldschool",
    GameMode.IRONMAN: "hiscore_oldschool_ironman",
    GameMode.HARDCORE: "hiscore_oldschool_hardcore_ironman",
    GameMode.ULTIMATE: "hiscore_oldschool_ultimate",
    GameMode.DEADMAN: "hiscore_oldschool_deadman",
    GameMode.SEASONAL: "hiscore_oldschool_seasonal",
    GameMode.TOURNAMENT: "hiscore_oldschool_tournament",
    GameMode.FRESH_START: "hiscore_oldschool_fresh_start",
    GameMode.DEFENCE_PURE: "hiscore_oldschool_skiller_defence",
    GameMode.SKILLER: "hiscore_oldschool_skiller",
}
MODE_BY_MODULE: dict[str, GameMode] = {module: mode for mode, module in MODULES.items()}


def hiscores_path(mode: GameMode, fmt: str = "json") -> str:
    """The path below the hiscores base URL; the player goes in the `player` query parameter."""
    page = "index_lite.json" if fmt == "json" else "index_lite.ws"
    return f"/m={MODULES[mode]}/{page}"
