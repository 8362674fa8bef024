"""Structured logs: one event per line, as JSON when stderr is not a terminal (a container, a
file, a log shipper) and as key=value on a terminal; OSRS_LOG_FORMAT=json|text chooses.

Messages are written `event key=value ...`; in JSON the event and each pair also become fields
of their own. Fields bound with `bound(...)` (the player key and the message id of the message
being handled) join every line logged inside it, in that task, and `extra={...}` adds fields to
one line."""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import IO

_BOUND: ContextVar[dict[str, object] | None] = ContextVar("osrs_log_fields", default=None)
# What every LogRecord has: anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_RESERVED = frozenset({"ts", "level", "service", "logger", "event", "msg", "exc"})
_EVENT = re.compile(r"([a-z][a-z0-9_]*)(?=\s|$)")
_PAIR = re.compile(r"(?:^|\s)([a-z_][a-z0-9_]*)=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\S*)")


@contextlib.contextmanager
def bound(**fields: object) -> Iterator[None]:
    """Add these fields to every line logged inside the block (and in tasks it starts)."""
    token = _BOUND.set({**(_BOUND.get() or {}), **fields})
    try:
        yield
    finally:
        _BOUND.reset(token)


def _extra(record: logging.LogRecord) -> dict[str, object]:
    extra = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}
    extra.pop("taskName", None)  # Python 3.12+
    return {**(_BOUND.get() or {}), **extra}


def _stamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
        f".{int(record.msecs):03d}Z"
    )


def message_fields(message: str) -> dict[str, str]:
    """`fetched player_key=zezima attempt=2 detail='HTTP 503'` -> {event: fetched,
    player_key: zezima, attempt: 2, detail: HTTP 503} (values as text)."""
    fields: dict[str, str] = {}
    if event := _EVENT.match(message):
        fields["event"] = event.group(1)
    for key, value in _PAIR.findall(message):
        if value[:1] in ("'", '"'):
            with contextlib.suppress(ValueError, SyntaxError):
                value = str(ast.literal_eval(value))
        fields.setdefault(key, value)
    return fields


class KeyValueFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line = (
            f"ts={_stamp(record)} level={record.levelname.lower()} "
            f"service={self.service} logger={record.name} msg={message}"
        )
        for key, value in _extra(record).items():
            if f"{key}=" not in message:
                line += f" {key}={value}"
        if record.exc_info:
            line += " exc=" + repr(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "ts": _stamp(record),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
        }
        parsed = message_fields(message)
        if "event" in parsed:
            entry["event"] = parsed.pop("event")
        entry["msg"] = message
        for key, value in (parsed | _extra(record)).items():
            if key not in _RESERVED:  # a pair named like a reserved field stays in `msg`
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def formatter(
    service: str, log_format: str = "auto", stream: IO | None = None
) -> logging.Formatter:
    """JSON or key=value; `auto` picks JSON unless the stream is a terminal."""
    stream = stream or sys.stderr
    if log_format == "auto":
        log_format = "text" if stream.isatty() else "json"
    return JsonFormatter(service) if log_format == "json" else KeyValueFormatter(service)


def configure(service: str, level: str = "INFO", log_format: str = "auto") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(service, log_format, sys.stderr))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "nats", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
