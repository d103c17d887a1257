import pytest

from ..memory_wire import call_directly, wire_serializer  # noqa: F401  (autouse)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    return call_directly(pyfuncitem)
