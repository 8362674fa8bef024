"""The packed form of an observation: per ranked entry, sorted by metric id, three unsigned
varints (LEB128): the metric id's step from the previous one, rank + 1 and value + 1 (xp for
skills, score for activities; 64-bit Overall xp fits). About 350 bytes a row all-in against
1,069 for a wide table (bench/storage.md); a new metric needs no schema change. Levels are not
stored: a skill's level follows from its xp, Overall's is a column of its own."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator


class PackedError(ValueError):
    """Bytes that are not a packed observation."""


def pack(entries: Iterable[tuple[int, int, int]]) -> bytes:
    """(metric id, rank, value) triples -> bytes; ranks and values are -1 or more."""
    out = bytearray()
    append = out.append
    previous = 0
    for metric_id, rank, value in sorted(entries):
        if metric_id <= previous or rank < -1 or value < -1:  # ids start at 1, each once
            raise PackedError(f"cannot pack metric {metric_id}: rank {rank}, value {value}")
        for number in (metric_id - previous, rank + 1, value + 1):
            while number >= 0x80:  # the varint, inline: this runs for every entry stored
                append((number & 0x7F) | 0x80)
                number >>= 7
            append(number)
        previous = metric_id
    return bytes(out)


def unpack(data: bytes) -> Iterator[tuple[int, int, int]]:
    """The (metric id, rank, value) triples of `pack`, in metric id order."""
    numbers = _varints(data)
    metric_id = 0
    for step in numbers:
        try:
            rank, value = next(numbers) - 1, next(numbers) - 1
        except StopIteration:
            raise PackedError("a packed observation ends inside an entry") from None
        metric_id += step
        yield metric_id, rank, value


def values(data: bytes) -> dict[int, int]:
    """metric id -> value of a packed observation: `unpack` without the ranks, in one pass
    over the bytes (the projector reads the previous observation of every new one)."""
    numbers: list[int] = []
    number = shift = 0
    for byte in data:
        if byte & 0x80:
            number |= (byte & 0x7F) << shift
            shift += 7
        else:
            numbers.append(number | (byte << shift))
            number = shift = 0
    if shift or len(numbers) % 3:
        raise PackedError("a packed observation ends inside a number or an entry")
    metric_ids = itertools.accumulate(numbers[0::3])
    return dict(zip(metric_ids, [value - 1 for value in numbers[2::3]], strict=True))


def _varints(data: bytes) -> Iterator[int]:
    number = shift = 0
    for byte in data:
        number |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        yield number
        number = shift = 0
    if shift:
        raise PackedError("a packed observation ends inside a number")
