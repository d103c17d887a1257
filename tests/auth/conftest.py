"""Fixtures of the authenticator tests (their helpers are in wire.py)."""

import pytest

from relayrouter.testing import FakeClock

from tests.memory_wire import call_directly, wire_serializer  # noqa: F401  (autouse)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    return call_directly(pyfuncitem)


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000.0)
