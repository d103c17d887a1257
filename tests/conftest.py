import pytest
import pytest_twisted

from . import log_guard
from .parallel import pytest_collection_modifyitems, pytest_xdist_make_scheduler  # noqa: F401  (hooks)
from .cpu_report import (pytest_addoption, pytest_runtest_protocol, pytest_sessionstart,  # noqa: F401  (hooks)
                         pytest_terminal_summary)
from .dists import dists, wheelhouse  # noqa: F401  (built once for the whole run)
from .support import start_router


@pytest.fixture(autouse=True)
def logged_errors():
    """Fails the test if anything logged an error or a traceback while it ran,
    or left a Deferred failure unhandled (see log_guard; ``logged_errors.expect``
    declares an error the test provokes on purpose)."""
    observer = log_guard.watch()
    yield observer
    problems = log_guard.finish(observer)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def module_garbage():
    """After a module's tests and its module-scoped fixtures: the garbage that the tests'
    own collections no longer look at (log_guard.finish_module)."""
    yield
    problems = log_guard.finish_module()
    if problems:
        pytest.fail("after this module's tests:\n\n" + "\n\n".join(problems), pytrace=False)


@pytest.fixture
def running():
    running = pytest_twisted.blockon(start_router())
    yield running
    for session in list(running.router.sessions()):
        session.peer.close()
    pytest_twisted.blockon(running.service.stopService())


def pytest_collection_finish(session):
    # The guard collects garbage after every test; what import and collection
    # built stays alive for the whole run, so take it out of those collections.
    log_guard.freeze_the_old()

