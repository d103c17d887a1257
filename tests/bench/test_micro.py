"""The micro-benchmarks time what they claim to: each case's peers must have
received the right messages, and a codec case's product must decode to the
message it encodes.  A correctness check, not a timing."""

import pytest
from autobahn.wamp import message as m

from bench import micro


def _events(peer):
    assert isinstance(peer.last, m.Event), peer.last
    assert peer.last.args == [micro.PAYLOAD]
    return peer.last


@pytest.mark.parametrize("subscribers", [1, 3, 100])
def test_publish_reaches_every_subscriber_once(subscribers):
    case = micro.publish_case(subscribers)
    result = micro.measure(case, 7)
    assert result.delivered == result.expected == 7 * subscribers


@pytest.mark.parametrize("serializer", ["json", "msgpack", "cbor", "json-router"])
def test_publish_with_bytes_makes_the_events_bytes(serializer, monkeypatch):
    receivers = []
    join = micro.join_counting

    def recording(*args, **kwargs):
        receivers.append(join(*args, **kwargs))
        return receivers[-1]

    monkeypatch.setattr(micro, "join_counting", recording)
    result = micro.measure(micro.publish_case(2, serializer), 5)
    assert result.delivered == result.expected == 10
    obj_ser = micro.OBJECT_SERIALIZERS[serializer]
    for peer in receivers[:2]:
        event = _events(peer)
        [decoded] = obj_ser.unserialize(event._serialized[obj_ser])  # made by the peer, as a transport would
        assert decoded == [36, event.subscription, event.publication, {}, [micro.PAYLOAD]]


def test_patterns_that_do_not_match_deliver_nothing_extra():
    result = micro.measure(micro.publish_case(1, patterns=50), 5)
    assert result.delivered == result.expected == 5


@pytest.mark.parametrize("serializer", [None, "json", "msgpack"])
def test_every_call_gets_its_result(serializer):
    result = micro.measure(micro.call_case(serializer), 9)
    assert result.delivered == result.expected == 9


@pytest.mark.parametrize("name", sorted(micro.OBJECT_SERIALIZERS))
def test_codec_cases_make_what_they_claim(name):
    obj_ser = micro.OBJECT_SERIALIZERS[name]
    encode = micro.serialize_case(name)
    assert micro.measure(encode, 3).delivered == 3
    assert obj_ser.unserialize(encode.product()) == [[36, 123456, 2**50 + 7, {}, [micro.PAYLOAD]]]
    decode = micro.unserialize_case(name)
    assert micro.measure(decode, 3).delivered == 3
    [publish] = decode.product()
    assert isinstance(publish, m.Publish)
    assert (publish.topic, publish.args) == (micro.TOPIC, [micro.PAYLOAD])


def test_the_command_line_runs_every_case_and_reports_a_wrong_count(capsys, monkeypatch):
    assert micro.main(["--seconds", "0.01", "--only", "publish,call,serialize"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == len(micro.cases({"publish", "call", "serialize"}))
    assert not [line for line in lines if "WRONG COUNT" in line]
    original = micro.call_case

    def losing(serializer=None):
        case = original(serializer)
        case.per_op = 2  # a router that should have delivered twice as much
        return case

    monkeypatch.setattr(micro, "call_case", losing)
    assert micro.main(["--seconds", "0.01", "--only", "call"]) == 1
    assert "WRONG COUNT" in capsys.readouterr().out


@pytest.mark.parametrize("limited", [False, True])
@pytest.mark.parametrize("failing", [False, True])
def test_every_login_gets_its_answer(limited, failing):
    result = micro.measure(micro.login_case(limited, failing), 30)
    assert result.delivered == 30  # WELCOME each time, or ABORT each time when failing


@pytest.mark.parametrize("name", list(micro._PARSE_CASES))
def test_parse_cases_parse(name):
    case = micro.parse_case(name)
    assert micro.measure(case, 5).delivered == 5
    parsed = case.product()
    kind = m.Publish if name.startswith("PUBLISH") else m.Subscribe
    assert isinstance(parsed, kind) and parsed.request == 5 and parsed.topic == micro.TOPIC
    if "undefined" in name:  # an undefined option is an absent one
        assert parsed.marshal()[2] == ({"exclude_me": True} if kind is m.Publish else {})
