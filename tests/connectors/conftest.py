import pytest

from . import processes


@pytest.fixture(autouse=True)
def router_faults():
    """Fails a test during which a router process printed an unhandled error
    or a traceback (the in-process guard of tests/conftest.py cannot see into
    children; the JS tests' router fixture does the same).  Routers shared by
    a module are checked after each test for what they printed since the
    last check."""
    yield
    found = [f"--- {router.name}:\n{fault}" for router in processes.STARTED for fault in router.new_faults()]
    processes.STARTED[:] = [router for router in processes.STARTED if router.running]
    if found:
        pytest.fail("the router printed an unhandled error or a traceback:\n" + "\n".join(found),
                    pytrace=False)
