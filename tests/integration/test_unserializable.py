"""A value one serializer can carry and another cannot never leaves a call hanging."""

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError

from ..support import connect_ws

BIG = 2 ** 70  # CBOR carries it (a bignum); MessagePack and JSON cannot


@pytest_twisted.inlineCallbacks
def test_a_result_the_caller_cannot_read_becomes_an_error(running):
    callee = yield connect_ws(running, serializer="cbor")
    caller = yield connect_ws(running, serializer="msgpack")
    yield callee.register(lambda: BIG, "com.example.big")
    with pytest.raises(ApplicationError) as info:
        yield caller.call("com.example.big")
    assert info.value.error == "wamp.error.invalid_argument"
    assert "the RESULT cannot be sent as msgpack" in info.value.args[0]
    assert (yield callee.call("com.example.big")) == BIG  # a CBOR caller gets it


@pytest_twisted.inlineCallbacks
def test_an_invocation_the_callee_cannot_read_answers_the_caller(running):
    callee = yield connect_ws(running, serializer="json")
    caller = yield connect_ws(running, serializer="cbor")
    yield callee.register(lambda x: x, "com.example.echo")
    with pytest.raises(ApplicationError) as info:
        yield caller.call("com.example.echo", BIG)
    assert info.value.error == "wamp.error.invalid_argument"
    assert "the INVOCATION cannot be sent as json" in info.value.args[0]
    assert (yield caller.call("com.example.echo", 7)) == 7  # the callee is fine
