"""Game modes (hiscores boards) and the hiscores module that serves each."""

from __future__ import annotations

import enum


class GameMode(enum.StrEnum):
    """A board to fetch, or for detected accounts the account type (a de-ironed account is
    fetched from the regular board)."""

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
    DE_IRONED = "de_ironed"


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
    GameMode.DE_IRONED: "hiscore_oldschool",
}
MODE_BY_MODULE: dict[str, GameMode] = {
    module: mode for mode, module in MODULES.items() if mode is not GameMode.DE_IRONED
}
# The account types that detection tells apart, from the boards an account appears on.
DETECTABLE = (
    GameMode.REGULAR,
    GameMode.IRONMAN,
    GameMode.HARDCORE,
    GameMode.ULTIMATE,
    GameMode.DE_IRONED,
)


def account_type(overall_xp: dict[GameMode, int | None]) -> GameMode | None:
    """The account type from the Overall xp an account shows on the boards asked so far
    (None: not on that board; a board not asked is absent). Returns None when the account is
    not on the regular board at all.

    An iron account also shows on the regular board, a hardcore or ultimate also on the ironman
    board; a de-ironed account's iron entry freezes while its regular one grows, and so does a
    dead hardcore's hardcore entry while its ironman one grows."""
    regular = overall_xp[GameMode.REGULAR]
    if regular is None:
        return None
    iron = overall_xp[GameMode.IRONMAN]
    if iron is None:
        return GameMode.REGULAR
    if regular > iron:
        return GameMode.DE_IRONED
    hardcore = overall_xp.get(GameMode.HARDCORE)
    if hardcore is not None:
        return GameMode.HARDCORE if hardcore >= iron else GameMode.IRONMAN  # behind: it died
    ultimate = overall_xp.get(GameMode.ULTIMATE)
    if ultimate is not None and ultimate >= iron:
        return GameMode.ULTIMATE
    return GameMode.IRONMAN


def hiscores_path(mode: GameMode, fmt: str = "json") -> str:
    """The path below the hiscores base URL; the player goes in the `player` query parameter."""
    page = "index_lite.json" if fmt == "json" else "index_lite.ws"
    return f"/m={MODULES[mode]}/{page}"
