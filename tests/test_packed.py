import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.packed import PackedError, pack, unpack, values

entries = st.dictionaries(
    st.integers(1, 5000),
    st.tuples(st.integers(-1, 2_000_000), st.integers(-1, 4_800_000_000)),
    max_size=150,
)


@given(entries)
def test_pack_round_trips(by_id):
    triples = [(m, r, v) for m, (r, v) in by_id.items()]
    assert list(unpack(pack(triples))) == sorted(triples)
    assert values(pack(triples)) == {m: v for m, _, v in triples}


def test_a_mid_level_entry_takes_a_few_bytes():
    assert len(pack([(2, 612904, 2514336)])) == 1 + 3 + 4
    assert pack([]) == b""


@pytest.mark.parametrize("bad", [[(1, -2, 0)], [(1, 0, -5)], [(3, 1, 1), (3, 1, 1)]])
def test_impossible_entries_are_refused(bad):
    with pytest.raises(PackedError):
        pack(bad)


@pytest.mark.parametrize("data", [b"\x80", b"\x01\x02"])
def test_truncated_bytes_are_refused(data):
    with pytest.raises(PackedError):
        list(unpack(data))
    with pytest.raises(PackedError):
        values(data)
