"""The micro-benchmarks count what they claim to: a correctness check, not a timing."""

import pytest

from bench import micro


@pytest.mark.parametrize("subscribers", [1, 3, 100])
def test_publish_reaches_every_subscriber_once(subscribers):
    result = micro.measure(micro.publish_case(subscribers), 7)
    assert result.delivered == result.expected == 7 * subscribers


@pytest.mark.parametrize("serializer", ["json", "msgpack", "cbor"])
def test_publish_with_bytes_counts_the_same(serializer):
    result = micro.measure(micro.publish_case(2, serializer), 5)
    assert result.delivered == 10


def test_patterns_that_do_not_match_deliver_nothing_extra():
    result = micro.measure(micro.publish_case(1, patterns=50), 5)
    assert result.delivered == 5


@pytest.mark.parametrize("serializer", [None, "json", "msgpack"])
def test_every_call_gets_one_result(serializer):
    case = micro.call_case(serializer)
    result = micro.measure(case, 9)
    assert result.delivered == 9


@pytest.mark.parametrize("name", sorted(micro.OBJECT_SERIALIZERS))
def test_codec_cases_run(name):
    assert micro.measure(micro.serialize_case(name), 3).delivered == 3
    assert micro.measure(micro.unserialize_case(name), 3).delivered == 3


def test_the_command_line_runs_every_case_briefly(capsys):
    assert micro.main(["--seconds", "0.01", "--only", "publish,call,serialize"]) == 0
    assert "call through the dealer" in capsys.readouterr().out


@pytest.mark.parametrize("limited", [False, True])
@pytest.mark.parametrize("failing", [False, True])
def test_every_login_gets_its_answer(limited, failing):
    result = micro.measure(micro.login_case(limited, failing), 30)
    assert result.delivered == 30  # WELCOME each time, or ABORT each time when failing


@pytest.mark.parametrize("name", list(micro._PARSE_CASES))
def test_parse_cases_parse(name):
    assert micro.measure(micro.parse_case(name), 5).delivered == 5
