import io
import json
import logging
import sys

import pytest

from shared import logs


def _record(msg: str, *args, exc_info=None, **extra) -> logging.LogRecord:
    record = logging.LogRecord("osrs.fetcher", logging.INFO, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_message_becomes_json_fields_event_and_pairs():
    line = logs.JsonFormatter("fetcher").format(
        _record(
            "fetched player_key=%s attempt=%d detail=%r",
            "lynx_titan",
            2,
            "HTTP 503 from the hiscores",
        )
    )
    entry = json.loads(line)
    assert entry["service"] == "fetcher" and entry["level"] == "info"
    assert entry["logger"] == "osrs.fetcher" and entry["ts"].endswith("Z")
    assert entry["event"] == "fetched"
    assert entry["player_key"] == "lynx_titan" and entry["attempt"] == "2"
    assert entry["detail"] == "HTTP 503 from the hiscores"
    assert entry["msg"].startswith("fetched player_key=lynx_titan")


def test_bound_fields_join_every_line_inside_the_block_only():
    formatter = logs.JsonFormatter("fetcher")
    with logs.bound(msg_id="lynx_titan:42", player_key="lynx_titan"):
        inside = json.loads(formatter.format(_record("retry attempt=1")))
    outside = json.loads(formatter.format(_record("retry attempt=1")))
    assert (inside["msg_id"], inside["player_key"]) == ("lynx_titan:42", "lynx_titan")
    assert "msg_id" not in outside and "player_key" not in outside


def test_text_lines_keep_their_shape_and_add_bound_and_extra_fields():
    formatter = logs.KeyValueFormatter("projector")
    with logs.bound(msg_id="OSRS_EVT:7", player_key="zezima"):
        line = formatter.format(_record("applied player_key=%s", "zezima", stream="OSRS_EVT"))
    assert " level=info service=projector logger=osrs.fetcher msg=applied player_key=zezima" in (
        line
    )
    assert line.count("player_key=") == 1  # already in the message: not repeated
    assert line.endswith(" msg_id=OSRS_EVT:7 stream=OSRS_EVT")


def test_exceptions_are_one_line_in_either_format():
    try:
        raise ValueError("bad")
    except ValueError:
        exc_info = sys.exc_info()
    text = logs.KeyValueFormatter("api").format(_record("boom", exc_info=exc_info))
    entry = json.loads(logs.JsonFormatter("api").format(_record("boom", exc_info=exc_info)))
    assert "\n" not in text and "ValueError: bad" in text
    assert "ValueError: bad" in entry["exc"] and entry["event"] == "boom"


def test_a_pair_named_like_a_reserved_field_stays_in_the_message():
    entry = json.loads(logs.JsonFormatter("projector").format(_record("dead_lettered service=x")))
    assert entry["service"] == "projector" and entry["msg"] == "dead_lettered service=x"


@pytest.mark.parametrize(
    ("log_format", "stream", "expected"),
    [
        ("auto", io.StringIO(), logs.JsonFormatter),
        ("auto", _Terminal(), logs.KeyValueFormatter),
        ("json", _Terminal(), logs.JsonFormatter),
        ("text", io.StringIO(), logs.KeyValueFormatter),
    ],
)
def test_json_unless_a_terminal_reads_it_or_the_setting_says(log_format, stream, expected):
    assert type(logs.formatter("api", log_format, stream)) is expected
