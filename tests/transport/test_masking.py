
from hypothesis import given, settings
from hypothesis import strategies as st

from relayrouter.transport.masking import SMALL, SmallPayloadMasker, _native_masker


@settings(max_examples=300, deadline=None)
@given(mask=st.binary(min_size=4, max_size=4), data=st.binary(max_size=SMALL + 10),
       cuts=st.lists(st.integers(min_value=0, max_value=SMALL + 10), max_size=4))
def test_small_masker_matches_autobahn_in_any_chunking(mask, data, cuts):
    ours, native = SmallPayloadMasker(mask), _native_masker(mask, len(data))
    points = sorted({min(c, len(data)) for c in cuts}) + [len(data)]
    start, got, want = 0, b"", b""
    for end in points:
        got += ours.process(data[start:end])
        want += native.process(data[start:end])
        start = end
    assert got == want
    assert ours.pointer() == len(data)


def test_reset():
    masker = SmallPayloadMasker(b"\x01\x02\x03\x04")
    first = masker.process(b"abc")
    masker.reset()
    assert masker.process(b"abc") == first == _native_masker(b"\x01\x02\x03\x04", 3).process(b"abc")
