"""Player names: validation, and the canonical `player_key`."""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9 _-]{1,12}")
_FOLD = str.maketrans({" ": "_", "-": "_"})


class InvalidPlayerName(ValueError):
    """Not a possible OSRS name."""


def validate_name(name: str) -> str:
    """The name, stripped of surrounding spaces, or InvalidPlayerName saying why not."""
    if not isinstance(name, str):
        raise InvalidPlayerName("a player name must be a string")
    stripped = name.strip()
    if not stripped:
        raise InvalidPlayerName("a player name must not be empty")
    if len(stripped) > 12:
        raise InvalidPlayerName(f"a player name has at most 12 characters, got {len(stripped)}")
    if not _NAME.fullmatch(stripped):
        raise InvalidPlayerName(
            "a player name may contain only letters, digits, space, '_' and '-'"
        )
    return stripped


def player_key(name: str) -> str:
    """Lower-case, with space, `_` and `-` folded to `_`: `Lynx Titan` -> `lynx_titan`."""
    return validate_name(name).lower().translate(_FOLD)
