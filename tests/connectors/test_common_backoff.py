import pytest

from connectors.common import Backoff


def test_doubles_up_to_the_ceiling_with_jitter_below_it():
    b = Backoff(initial=1, maximum=10, factor=2, jitter=0.5, rng=lambda: 1.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    b.rng = lambda: 0.0
    assert b.next() == 10
    b.reset()
    assert b.next() == 1


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=5, maximum=1)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1)
