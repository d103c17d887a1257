import pytest
import pytest_twisted

from .support import start_router


@pytest.fixture
def running():
    running = pytest_twisted.blockon(start_router())
    yield running
    for session in list(running.router.sessions()):
        session.peer.close()
    pytest_twisted.blockon(running.service.stopService())
