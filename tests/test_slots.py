from datetime import UTC, datetime

from services.scheduler.slots import Schedule, due_time, phase, slot_at
from shared.events import PlayerTracked, PlayerUntracked, PlayerUpdated

LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp()


def tracked(key: str, interval_s: int = 60, at: datetime = LONG_AGO) -> PlayerTracked:
    return PlayerTracked(player_key=key, display_name=key, interval_s=interval_s, by="t", at=at)


def test_phase_is_stable_and_inside_the_interval():
    assert phase("lynx_titan", 3600) == phase("lynx_titan", 3600)
    assert all(0 <= phase(f"p{i}", 3600) < 3600 for i in range(1000))


def test_phases_spread_players_over_the_interval():
    buckets = [0] * 10
    for i in range(10_000):
        buckets[phase(f"player_{i}", 3600) * 10 // 3600] += 1
    assert min(buckets) > 800 and max(buckets) < 1200


def test_slot_and_due_time_agree():
    for t in (0, 59.9, 60, 1_000_000.5):
        k = slot_at("zezima", 60, t)
        assert due_time("zezima", 60, k) <= t < due_time("zezima", 60, k + 1)


def test_a_player_tracked_long_ago_is_due_at_once_then_once_per_interval():
    schedule = Schedule()
    now = NOW
    schedule.apply(tracked("a"), now)
    first = schedule.pop_due(now)
    assert [d.slot for d in first] == [slot_at("a", 60, now)]
    assert schedule.pop_due(now) == []
    later = schedule.pop_due(due_time("a", 60, first[0].slot + 1))
    assert [d.slot for d in later] == [first[0].slot + 1]


def test_a_player_tracked_just_now_waits_for_its_next_slot():
    schedule = Schedule()
    now = NOW
    schedule.apply(tracked("b", at=datetime.fromtimestamp(now, UTC)), now)
    assert schedule.pop_due(now) == []
    nxt = due_time("b", 60, slot_at("b", 60, now) + 1)
    assert [d.slot for d in schedule.pop_due(nxt)] == [slot_at("b", 60, now) + 1]


def test_untracked_players_are_not_scheduled_and_retracking_does_not_double():
    schedule = Schedule()
    now = NOW
    schedule.apply(tracked("c"), now)
    schedule.apply(PlayerUntracked(player_key="c", by="t"), now)
    assert schedule.pop_due(now + 3600) == []
    schedule.apply(tracked("c"), now)
    schedule.apply(PlayerUntracked(player_key="c", by="t"), now)
    schedule.apply(tracked("c"), now)
    assert len(schedule.pop_due(now)) == 1


def test_an_interval_change_moves_the_slots():
    schedule = Schedule()
    now = NOW
    schedule.apply(tracked("d", 60), now)
    schedule.pop_due(now)
    schedule.apply(PlayerUpdated(player_key="d", interval_s=3600, at=LONG_AGO), now)
    due = schedule.pop_due(now + 7200)
    assert [(d.player.interval_s, d.slot) for d in due] == [(3600, slot_at("d", 3600, now + 7200))]


def test_slots_missed_while_away_collapse_into_one():
    schedule = Schedule()
    schedule.apply(tracked("f", 60), NOW)
    schedule.pop_due(NOW)
    due = schedule.pop_due(NOW + 600)
    assert [d.slot for d in due] == [slot_at("f", 60, NOW + 600)]


def test_a_rename_keeps_the_slots():
    schedule = Schedule()
    now = NOW
    schedule.apply(tracked("e"), now)
    schedule.apply(PlayerUpdated(player_key="e", display_name="E e", at=LONG_AGO), now)
    due = schedule.pop_due(now)
    assert [d.player.display_name for d in due] == ["E e"]


def test_reseed_owes_every_player_its_current_slot():
    schedule = Schedule()
    schedule.apply(tracked("g", 3600), NOW)
    schedule.apply(tracked("h", 3600, at=datetime.fromtimestamp(NOW, UTC)), NOW)
    later = NOW + 5 * 3600
    schedule.reseed(later)
    due = {d.player.key: d.slot for d in schedule.pop_due(later)}
    assert due == {"g": slot_at("g", 3600, later), "h": slot_at("h", 3600, later)}
    assert schedule.pop_due(later) == []


def test_a_player_whose_mode_is_detected_waits_out_the_detection():
    schedule = Schedule()
    at = datetime.fromtimestamp(NOW, UTC)
    event = PlayerTracked(
        player_key="i", display_name="i", interval_s=60, by="t", at=at, detect_mode=True
    )
    schedule.apply(event, NOW)
    due = schedule.pop_due(NOW + 3600)
    assert due[0].player.detect_mode
    first = schedule.players["i"].first_slot(NOW)
    assert due_time("i", 60, first) >= NOW + 30


def test_a_stale_mode_change_is_ignored():
    schedule = Schedule()
    schedule.apply(tracked("j"), NOW)
    schedule.apply(PlayerUpdated(player_key="j", mode="hardcore", at=LONG_AGO), NOW)  # by hand
    stale = PlayerUpdated(
        player_key="j", mode="ironman", if_mode="regular", by="fetcher", at=LONG_AGO
    )
    schedule.apply(stale, NOW)
    assert schedule.players["j"].mode == "hardcore"
    schedule.apply(
        PlayerUpdated(player_key="j", mode="ironman", if_mode="hardcore", at=LONG_AGO), NOW
    )
    assert schedule.players["j"].mode == "ironman"


def test_a_mode_set_by_hand_ends_the_detection():
    schedule = Schedule()
    at = datetime.fromtimestamp(NOW, UTC)
    schedule.apply(
        PlayerTracked(
            player_key="k", display_name="k", interval_s=60, by="t", at=at, detect_mode=True
        ),
        NOW,
    )
    schedule.apply(PlayerUpdated(player_key="k", mode="ironman", detect_mode=False, at=at), NOW)
    assert (schedule.players["k"].mode, schedule.players["k"].detect_mode) == ("ironman", False)
