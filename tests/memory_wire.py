"""Every in-memory peer of a core test serializes what it is sent, with each
of the router's three serializers in turn."""

import pytest

from relayrouter.testing import SERIALIZERS, MemoryPeer


@pytest.fixture(autouse=True, params=sorted(SERIALIZERS))
def wire_serializer(request, monkeypatch):
    """Runs the test once per serializer; fails it if any in-memory peer was
    sent a message that does not survive that serializer."""
    peers: list[MemoryPeer] = []
    monkeypatch.setattr(MemoryPeer, "default_serializer", request.param)
    monkeypatch.setattr(MemoryPeer, "created", peers)
    yield request.param
    lost = [f"{type(message).__name__} {message.marshal()!r}: {problem}"
            for peer in peers for message, problem in peer.unserializable]
    if lost:
        pytest.fail(f"sent to an in-memory peer and not serializable as {request.param}:\n"
                    + "\n".join(lost), pytrace=False)


def call_directly(pyfuncitem) -> bool:
    """pytest's own way of calling a test, for a pytest_pyfunc_call hook.

    Core tests need no reactor, and pytest-twisted's wrapping of hypothesis
    tests keeps the first parametrized item's arguments for all the others."""
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    pyfuncitem.obj(**args)
    return True
