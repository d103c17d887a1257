"""The suite's own scheduling on pytest-xdist workers (tests/parallel.py), shown on a small
suite run with ``-n 3 --dist loadgroup``: the tests of a module-scoped fixture run on one
worker, in their order, with the fixture set up once; tests that name a resource
(``xdist_group``) run on one worker with the rest of their fixture's group; the others
spread. Both with pytest-xdist's rewritten node ids (``<node id>@<group>``) and with node ids
left as they were (pytest 9.2 does not let a plugin rewrite them)."""

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CONFTEST = '''
from tests.parallel import pytest_collection_modifyitems, pytest_xdist_make_scheduler  # noqa: F401
'''

# -p keep_node_ids: the node ids as pytest 9.2 leaves them, whatever pytest-xdist does.
KEEP_NODE_IDS = '''
import pytest


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items):
    ids = [item.nodeid for item in items]
    yield
    for item, nodeid in zip(items, ids):
        item._nodeid = nodeid
'''

RECORD = '''
import json
import os

import pytest


def record(**fields):
    fields.update(worker=os.environ["PYTEST_XDIST_WORKER"])
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps(fields) + "\\n")
'''

SHARED = RECORD + '''

@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    record(module=__name__, setup=True)
    return tmp_path_factory.mktemp(__name__)


@pytest.mark.parametrize("i", range(8))
def test_step(shared, i):
    """Each step needs the file its predecessor wrote, as the docs' examples do."""
    if i:
        assert (shared / f"{i - 1}").exists()
    (shared / f"{i}").write_text("")
    record(module=__name__, step=i)
'''

NAMED = RECORD + '''

@pytest.mark.xdist_group("port-x")
@pytest.mark.parametrize("i", range(4))
def test_named(i):
    record(module=__name__, step=i)
'''

NAMED_WITH_FIXTURE = RECORD + '''

@pytest.fixture(scope="module")
def shared():
    record(module=__name__, setup=True)


def test_first(shared):
    record(module=__name__, step=0)


@pytest.mark.xdist_group("port-x")
def test_on_the_port(shared):
    record(module=__name__, step=1)
'''

FREE = RECORD + '''

@pytest.mark.parametrize("i", range(12))
def test_free(i):
    record(module=__name__, step=i)
'''


@pytest.mark.parametrize("node_ids", ["rewritten", "kept"])
def test_groups_run_whole_on_one_worker_in_order(tmp_path, node_ids):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(CONFTEST)
    (suite / "keep_node_ids.py").write_text(KEEP_NODE_IDS)
    for name in ("test_a", "test_b", "test_c"):
        (suite / f"{name}.py").write_text(SHARED)
    (suite / "test_named.py").write_text(NAMED)
    (suite / "test_named_with_fixture.py").write_text(NAMED_WITH_FIXTURE)
    (suite / "test_free.py").write_text(FREE)
    record = tmp_path / "record.jsonl"
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}  # not this run's worker
    env.update(RECORD=str(record), PYTHONPATH=f"{ROOT}{os.pathsep}{suite}")
    keep = ["-p", "keep_node_ids"] if node_ids == "kept" else []
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *keep, "-n", "3",
                             "--dist", "loadgroup", "-rA", str(suite)],
                            cwd=suite, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    if node_ids == "kept":
        assert "@port-x" not in result.stdout, result.stdout

    runs = [json.loads(line) for line in record.read_text().splitlines()]
    workers = defaultdict(set)
    steps = defaultdict(list)
    setups = defaultdict(int)
    for run in runs:
        workers[run["module"]].add(run["worker"])
        if run.get("setup"):
            setups[run["module"]] += 1
        else:
            steps[run["module"]].append(run["step"])
    for module in ("test_a", "test_b", "test_c"):
        assert len(workers[module]) == 1, f"{module} ran on {workers[module]}"
        assert setups[module] == 1
        assert steps[module] == list(range(8))
    assert workers["test_named"] == workers["test_named_with_fixture"] and len(workers["test_named"]) == 1
    assert setups["test_named_with_fixture"] == 1
    assert sorted(steps["test_free"]) == list(range(12))
    assert len({run["worker"] for run in runs}) == 3, "the work was not spread over the workers"


def test_the_suites_hooks_are_the_schedulers():
    """tests/conftest.py uses these very hooks (a copy could drift from them)."""
    from tests import conftest, parallel

    assert conftest.pytest_collection_modifyitems is parallel.pytest_collection_modifyitems
    assert conftest.pytest_xdist_make_scheduler is parallel.pytest_xdist_make_scheduler


def test_ports_are_below_the_systems_range_and_each_workers_own(monkeypatch):
    """tests/ports.py: no outgoing connection's source port and no bind(0) can take a port
    between the pick and the server's start, nor another worker's pick."""
    from tests import ports

    start = 32768  # Linux's default; the machine's own is read from /proc
    monkeypatch.setattr(ports, "ephemeral_start", lambda: start)
    blocks = [ports.worker_block(f"gw{i}", "4") for i in range(4)]
    assert all(b.stop <= start for b in blocks)
    assert all(a.stop <= b.start for a, b in zip(blocks, blocks[1:]))
    monkeypatch.setattr(ports, "_ports", None)
    picked = [ports.free_port() for _ in range(50)]
    mine = ports.worker_block()
    assert len(set(picked)) == 50 and all(p in mine for p in picked)
    import socket

    with socket.socket() as held:  # a port bound by someone else is passed over
        taken = next(port for port in mine if ports.is_free(port))
        held.bind(("127.0.0.1", taken))
        other = next(port for port in mine if port != taken and ports.is_free(port))
        monkeypatch.setattr(ports, "_ports", (mine, iter([taken, other])))
        assert ports.free_port() == other


def test_the_cpu_report_sums_by_module_and_ranks_by_processor_time():
    from tests.cpu_report import summary

    lines = [{"test": "tests/a.py::t1", "wall": 2.0, "own": 0.5, "children": 3.0},
             {"test": "tests/a.py::t2", "wall": 1.0, "own": 0.5, "children": 0.0},
             {"test": "tests/b.py::t[x]", "wall": 9.0, "own": 0.1, "children": 0.1},
             {"test": "tests/c.py::t", "wall": 0.5, "own": 2.0, "children": 0.0}]
    out = summary(lines, wall=10.0, cores=2, top=2)
    assert out[0] == ("6 s of processor time in 4 tests (3 s in pytest, 3 s in the processes they started), "
                      "against 2 cores x 10 s = 20 s")
    assert [row.split()[-1] for row in out[2:]] == ["tests/a.py", "tests/c.py"]
    assert out[2].split()[:3] == ["4.0", "2", "3.0"]


def test_ports_come_from_the_system_where_its_range_leaves_no_room_below(monkeypatch):
    from tests import ports

    monkeypatch.setattr(ports, "ephemeral_start", lambda: ports.LOWEST + 100)
    monkeypatch.setattr(ports, "_ports", None)
    assert ports.worker_block() is None
    port = ports.free_port()
    assert ports.is_free(port) and ports._ports is None  # asked of the system each time
