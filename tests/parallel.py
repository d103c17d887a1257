"""How the suite runs on several pytest-xdist workers (``.ci/run`` passes ``-n`` and
``--dist loadgroup``; see docs/explanation/test-suite.md).

Every test starts what it needs on free loopback ports with its own temporary
directory, so most tests can run anywhere.  What they share is grouped, and a
group runs on one worker:

* the tests of one module-scoped fixture (a NATS server and its nodes, an
  ACA-Py pair, a fuzz net of processes) go together, so the fixture is set up
  once, as in a serial run; one group per parameter of a parametrized fixture
  (the cluster's two loops), which do not share an instance anyway;
* the tests of one package-scoped fixture (tests/packaging's virtualenv) go together;
* a test that needs a fixed resource of the machine says so with
  ``@pytest.mark.xdist_group("<resource>")`` (port 8080); the groups above of
  such a test take that name, so all users of the resource share one worker.

Long scenarios (marked ``scenario``) go first in the queue on workers, with
the rest of their group, so that none of them starts last and keeps the run
waiting for it alone.

Without ``-n`` nothing here changes what, how or in which order tests run.

pytest-xdist's own ``loadgroup`` reads a group from the test's node id, which it
rewrites on the worker (``<node id>@<group>``); pytest 9.2 no longer lets a plugin
rewrite a node id, so there the groups would be ignored. Here each worker also writes
the groups it marked (node id -> group) into the run's directory, and
``GroupScheduling``, the controller's scheduler for ``--dist loadgroup``, sends
each group as one unit: the group written for a node id, or, where pytest let
xdist rewrite it, the group its suffix names (the written node ids have none).
tests/test_parallel.py runs a small suite on workers to show that both hold.

The hooks below are tests/conftest.py's (imported there by name).
"""

import json
import os

import pytest

SHARED_SCOPES = ("package", "module", "class")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # Before pytest-xdist reads the groups (--dist loadgroup) and rewrites the node ids.
    arrange(config, items)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    return make_scheduler(config, log) if config.getvalue("dist") == "loadgroup" else None


def fixture_group(item) -> str | None:
    """The group of the widest non-session fixture ``item`` shares with other tests, if any."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    module = item.nodeid.split("::")[0]
    best = None
    for name in info.names_closure:
        defs = info.name2fixturedefs.get(name)
        if not defs:
            continue
        scope = defs[-1].scope
        if scope not in SHARED_SCOPES:
            continue
        rank = SHARED_SCOPES.index(scope)
        if scope == "package":
            group = defs[-1].baseid or module
        else:
            group = module
            params = getattr(getattr(item, "callspec", None), "params", {})
            if name in params:  # not in brackets: pytest-xdist reads a node id's group after its last "]"
                group += f"({name}={params[name]})"
        if best is None or rank < best[0] or (rank == best[0] and group > best[1]):
            best = (rank, group)
    return best[1] if best else None


def arrange(config, items) -> None:
    """Groups marked (see the module's docstring) and, on a pytest-xdist worker, scenarios first
    and the groups written for the controller."""
    assign_groups(items)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        scenarios_first(items)
        groups = {item.nodeid: group_of(item) for item in items if item.get_closest_marker("xdist_group")}
        path = run_directory(config) / f"xdist-groups-{worker}.json"
        path.with_suffix(".tmp").write_text(json.dumps(groups))
        path.with_suffix(".tmp").replace(path)


def run_directory(config):
    """The run's temporary directory: the controller's, which holds each worker's own."""
    base = config._tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


def make_scheduler(config, log):
    """The controller's scheduler for --dist loadgroup (see the module's docstring)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        groups: dict = {}

        def schedule(self) -> None:
            if self.collection is None:  # every worker has collected and written its groups
                for path in sorted(run_directory(config).glob("xdist-groups-*.json")):
                    self.groups = json.loads(path.read_text())
                    break
            super().schedule()

        def _split_scope(self, nodeid: str) -> str:
            if nodeid in self.groups:
                return self.groups[nodeid]
            if nodeid.rfind("@") > nodeid.rfind("]"):  # rewritten by pytest-xdist: <node id>@<group>
                return nodeid.rsplit("@", 1)[1]
            return nodeid

    return GroupScheduling(config, log)


def group_of(item) -> str:
    marker = item.get_closest_marker("xdist_group")
    return marker.args[0] if marker is not None else item.nodeid


def scenarios_first(items) -> None:
    """The tests of every group that holds a scenario before the others, each in its order (a stable
    sort: a module's tests stay together, so its fixtures are still set up once)."""
    long = {group_of(item) for item in items if item.get_closest_marker("scenario") is not None}
    items.sort(key=lambda item: group_of(item) not in long)


def assign_groups(items) -> None:
    """Mark every test that shares a fixture or a resource with its group (see the module's docstring)."""
    groups = {item: fixture_group(item) for item in items}
    renamed = {}
    for item in items:
        explicit = item.get_closest_marker("xdist_group")
        if explicit is not None and groups[item] is not None:
            renamed[groups[item]] = explicit.args[0] if explicit.args else explicit.kwargs["name"]
    for item in items:
        group = renamed.get(groups[item], groups[item])
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
