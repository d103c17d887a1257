import pytest

from ..connectors import processes


@pytest.fixture(autouse=True)
def router_faults():
    """Fails a test during which a node printed an unhandled error or a traceback."""
    yield
    found = [f"--- {router.name}:\n{fault}" for router in processes.STARTED for fault in router.new_faults()]
    processes.STARTED[:] = [router for router in processes.STARTED if router.running]
    if found:
        pytest.fail("a router node printed an unhandled error or a traceback:\n" + "\n".join(found),
                    pytrace=False)
