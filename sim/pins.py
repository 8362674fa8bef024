"""Pinned answers: canned responses that tests queue for a player ahead of the synthetic ones,
to play out outages, HTML-200 pages, 404 flaps or a payload of their choosing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from shared.modes import MODE_BY_MODULE

FOREVER = -1


class PinError(ValueError):
    """A pin request that cannot be queued; `status` is the HTTP answer to give."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class PinRequest(msgspec.Struct, forbid_unknown_fields=True):
    status: int = 200
    body: Any = ""
    content_type: str = "application/json"
    times: int = 1
    module: str | None = None


@dataclass(slots=True, eq=False)  # queued pins are told apart by identity
class Pin:
    status: int
    body: bytes
    content_type: str
    remaining: int  # FOREVER, or how many more requests this pin answers
    module: str | None  # None answers on every board

    def answers(self, module: str) -> bool:
        return self.module is None or self.module == module


def parse_pin(raw: bytes) -> Pin:
    """The pin described by a POST body, or PinError saying what is wrong with it."""
    try:
        request = msgspec.json.decode(raw, type=PinRequest)
    except msgspec.ValidationError as exc:
        raise PinError(422, f"bad pin: {exc}") from None
    except msgspec.DecodeError as exc:
        raise PinError(400, f"the pin body must be a JSON object: {exc}") from None
    _check(request)
    # A string is sent as is (HTML, CSV, garbage); anything else is sent JSON-encoded.
    body = request.body
    encoded = body.encode("utf-8") if isinstance(body, str) else msgspec.json.encode(body)
    return Pin(request.status, encoded, request.content_type, request.times, request.module)


def _check(request: PinRequest) -> None:
    if not 100 <= request.status <= 599:
        raise PinError(422, f"status must be 100..599, got {request.status}")
    if request.times != FOREVER and request.times < 1:
        raise PinError(422, f"times must be -1 (forever) or at least 1, got {request.times}")
    if request.module is not None and request.module not in MODE_BY_MODULE:
        raise PinError(422, f"unknown module {request.module!r}")
    content_type = request.content_type
    if not content_type or any(c in content_type for c in "\r\n") or not content_type.isascii():
        raise PinError(422, "content_type must be a non-empty ASCII header value")


class PinBoard:
    """Per player_key queues; the first pin that answers the requested module is used."""

    def __init__(self) -> None:
        self._queues: dict[str, list[Pin]] = {}

    def add(self, key: str, pin: Pin) -> None:
        self._queues.setdefault(key, []).append(pin)

    def take(self, key: str, module: str) -> Pin | None:
        """Consume one use of the player's next pin for this module, if any."""
        queue = self._queues.get(key)
        if not queue:
            return None
        pin = next((p for p in queue if p.answers(module)), None)
        if pin is None:
            return None
        if pin.remaining != FOREVER:
            pin.remaining -= 1
            if pin.remaining == 0:
                queue.remove(pin)
                if not queue:
                    del self._queues[key]
        return pin

    def clear(self, key: str) -> int:
        """Drop the player's pins; returns how many there were."""
        return len(self._queues.pop(key, ()))

    def clear_all(self) -> None:
        self._queues.clear()

    def counts(self) -> dict[str, int]:
        return {key: len(queue) for key, queue in self._queues.items()}
