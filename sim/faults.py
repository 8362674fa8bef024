"""Faults: the simulator misbehaving the way the real hiscores do, by rate, by name prefix or
during an outage window, switchable at runtime through `PUT /_sim/faults`.

The configuration is one JSON document (FaultConfig); every field is optional:

    {"rates": {"429": 0.02, "reset": 0.01},   # per hiscores request, drawn from the seed
     "prefixes": {"flaky": "503"},            # every name folding to flaky* gets a 503
     "retry_after_s": 1,                      # the Retry-After of a 429
     "slow_s": 15.0,                          # how late a `slow` answer comes
     "outage": false,                         # true: every lookup gets the HTML-200 page
     "outage_windows": {"every_s": 600, "for_s": 60},  # or the first 60 s of every 600 s
     "new_bosses": [{"name": "Mad Angel II", "after": "Mad Angel"}]}  # a layout change

The kinds, for JSON and CSV alike:
    404                  the HTML not-found page, as for an unknown player
    429                  a small HTML page with `Retry-After: retry_after_s`
    500 502 503 504      a small HTML error page, as a front end or gateway sends
    slow                 the right answer, slow_s late (longer than a client's timeout)
    html200              status 200, text/html: the outage page
    truncated            status 200, the right content type and length, the body cut in half
    wrong_type           status 200, the complete and valid payload labelled text/html (a front
                         end mislabelling it): a client must read the body, not the label
    reset                no HTTP answer: the TCP connection is aborted with an RST

Precedence: pins, then an outage (flag or window), then the longest matching prefix, then one
draw at the rates. Outage windows count from when the config is applied. `truncated` and
`wrong_type` garble a 200 only: a lookup that would 404 still gets the plain 404.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from sim.layout import BASE_LAYOUT, Layout, LayoutError, make_layout
from sim.ranks import unit
from sim.rows import MAX_NEW_BOSSES

STATUS_FAULTS = ("404", "429", "500", "502", "503", "504")
FAULT_KINDS = (*STATUS_FAULTS, "slow", "html200", "truncated", "wrong_type", "reset")
HTML200 = "html200"
_FAULT_SALT = 0xFA017
_PREFIX = re.compile(r"[a-z0-9_]{1,12}")
_FOLD = str.maketrans({" ": "_", "-": "_"})


class FaultError(ValueError):
    """A fault configuration that cannot be used; `status` is the HTTP answer to give."""

    def __init__(self, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class OutageWindows(msgspec.Struct, forbid_unknown_fields=True):
    every_s: float
    for_s: float


class NewBoss(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    after: str


class FaultConfig(msgspec.Struct, forbid_unknown_fields=True):
    rates: dict[str, float] = {}
    prefixes: dict[str, str] = {}
    retry_after_s: int = 1
    slow_s: float = 15.0
    outage: bool = False
    outage_windows: OutageWindows | None = None
    new_bosses: list[NewBoss] = []


NO_FAULTS = FaultConfig()


def fold_prefix(prefix: str) -> str:
    """A name prefix folded like a player key: `Flaky-` -> `flaky_`."""
    folded = prefix.strip().lower().translate(_FOLD)
    if not _PREFIX.fullmatch(folded):
        raise FaultError(f"a name prefix is 1-12 letters, digits, space, _ or -: {prefix!r}")
    return folded


def check(config: FaultConfig) -> FaultConfig:
    """The config with its prefixes folded, or FaultError saying what is wrong with it."""
    for kind, rate in config.rates.items():
        _check_kind(kind)
        if not 0.0 <= rate <= 1.0:
            raise FaultError(f"the rate of {kind!r} must be 0..1, got {rate}")
    if sum(config.rates.values()) > 1.0 + 1e-9:
        raise FaultError("the fault rates add up to more than 1")
    prefixes = {}
    for prefix, kind in config.prefixes.items():
        _check_kind(kind)
        prefixes[fold_prefix(prefix)] = kind
    if config.retry_after_s < 0:
        raise FaultError("retry_after_s must not be negative")
    if not 0.0 <= config.slow_s <= 3600.0:
        raise FaultError("slow_s must be 0..3600")
    windows = config.outage_windows
    if windows is not None and not (windows.every_s > 0 and 0 <= windows.for_s <= windows.every_s):
        raise FaultError("outage_windows needs every_s > 0 and 0 <= for_s <= every_s")
    if len(config.new_bosses) > MAX_NEW_BOSSES:
        raise FaultError(f"at most {MAX_NEW_BOSSES} new bosses")
    _layout(config)  # raises on an unknown `after` or a duplicate name
    return msgspec.structs.replace(config, prefixes=prefixes)


def parse_faults(raw: bytes | str | Mapping[str, Any] | FaultConfig | None) -> FaultConfig:
    """A checked FaultConfig from JSON text, a mapping (the same shape) or a config."""
    if raw is None:
        return NO_FAULTS
    try:
        if isinstance(raw, FaultConfig):
            config = raw
        elif isinstance(raw, bytes | str):
            config = msgspec.json.decode(raw, type=FaultConfig)
        else:
            config = msgspec.convert(dict(raw), type=FaultConfig)
    except msgspec.ValidationError as exc:
        raise FaultError(f"bad faults: {exc}") from None
    except msgspec.DecodeError as exc:
        raise FaultError(f"the faults body must be a JSON object: {exc}", 400) from None
    return check(config)


def _check_kind(kind: str) -> None:
    if kind not in FAULT_KINDS:
        raise FaultError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")


def _layout(config: FaultConfig) -> Layout:
    try:
        return make_layout(tuple((boss.name, boss.after) for boss in config.new_bosses))
    except LayoutError as exc:
        raise FaultError(str(exc)) from None


# --- command-line helpers: `KIND=RATE`, `PREFIX=KIND`, `NAME@AFTER` ---------------------------


def parse_rate(text: str) -> tuple[str, float]:
    """`429=0.05` -> ("429", 0.05)."""
    kind, sep, rate = text.partition("=")
    if not sep:
        raise FaultError(f"expected KIND=RATE, got {text!r}")
    _check_kind(kind.strip())
    try:
        return kind.strip(), float(rate)
    except ValueError:
        raise FaultError(f"not a rate: {rate!r}") from None


def parse_prefix(text: str) -> tuple[str, str]:
    """`flaky=503` -> ("flaky", "503")."""
    prefix, sep, kind = text.rpartition("=")
    if not sep:
        raise FaultError(f"expected PREFIX=KIND, got {text!r}")
    _check_kind(kind.strip())
    return fold_prefix(prefix), kind.strip()


def parse_new_boss(text: str) -> dict[str, str]:
    """`Mad Angel II@Mad Angel` -> {"name": "Mad Angel II", "after": "Mad Angel"}."""
    name, sep, after = text.partition("@")
    if not sep:
        raise FaultError(f"expected NAME@AFTER, got {text!r}")
    return {"name": name.strip(), "after": after.strip()}


class FaultBoard:
    """The faults in force, and the fault each hiscores request gets."""

    def __init__(self, seed: int, config: FaultConfig = NO_FAULTS, now: float = 0.0) -> None:
        self.seed = seed
        self.draws = 0
        self.set(config, now)

    def set(self, config: FaultConfig, now: float) -> None:
        """Switch to a checked config; outage windows count from `now`."""
        self.config = config
        self.since = now
        self.layout = _layout(config) if config.new_bosses else BASE_LAYOUT
        # Longest prefix first, so that `flaky_x` can override `flaky`.
        self._prefixes = sorted(config.prefixes.items(), key=lambda kv: -len(kv[0]))
        self._rates = [(kind, rate) for kind, rate in config.rates.items() if rate > 0]

    def outage_now(self, now: float) -> bool:
        if self.config.outage:
            return True
        windows = self.config.outage_windows
        return windows is not None and (now - self.since) % windows.every_s < windows.for_s

    def pick(self, key: str, now: float) -> str | None:
        """The fault for one lookup of `key` (a folded name), or None to answer normally."""
        if self.outage_now(now):
            return HTML200
        for prefix, kind in self._prefixes:
            if key.startswith(prefix):
                return kind
        if not self._rates:
            return None
        # One draw per request: the same seed and request sequence give the same faults.
        u = unit(self.seed, _FAULT_SALT, self.draws)
        self.draws += 1
        for kind, rate in self._rates:
            if u < rate:
                return kind
            u -= rate
        return None

    def as_json(self, now: float) -> dict[str, Any]:
        body = msgspec.to_builtins(self.config)
        body["outage_now"] = self.outage_now(now)
        return body


def build_faults(
    base: bytes | str | Mapping[str, Any] | FaultConfig | None = None,
    *,
    rates: Mapping[str, float] | None = None,
    prefixes: Mapping[str, str] | None = None,
    retry_after_s: int | None = None,
    slow_s: float | None = None,
    outage: bool | None = None,
    outage_every_s: float | None = None,
    outage_for_s: float | None = None,
    new_bosses: list[str | Mapping[str, str]] | None = None,
) -> FaultConfig:
    """`base` (the JSON document) with the given fields replaced; what serve() and the command
    line use. A new boss is `{"name":..., "after":...}` or the text `NAME@AFTER`."""
    doc = msgspec.to_builtins(parse_faults(base))
    given = {
        "rates": dict(rates) if rates is not None else None,
        "prefixes": dict(prefixes) if prefixes is not None else None,
        "retry_after_s": retry_after_s,
        "slow_s": slow_s,
        "outage": outage,
    }
    doc.update({field: value for field, value in given.items() if value is not None})
    if outage_every_s is not None or outage_for_s is not None:
        doc["outage_windows"] = {"every_s": outage_every_s or 0.0, "for_s": outage_for_s or 0.0}
    if new_bosses is not None:
        doc["new_bosses"] = [
            parse_new_boss(boss) if isinstance(boss, str) else dict(boss) for boss in new_bosses
        ]
    return parse_faults(doc)
