"""``--cpu-report``: where the suite's processor time goes, by test module (``.ci/run`` asks for it).

On the two-core CI machine the suite is bound by the processor, not by its waits: four
workers keep both cores busy most of the run. So the slowest tests (``--durations``) say
what a contributor waits for, and this report says what costs: for each test, the processor
time of the pytest process running it and of the processes it started and waited for
(routers, connectors, NATS servers, tutorials' shells; ``getrusage`` of self and children),
summed by module, with the run's total against what the cores could give in its wall time.
A daemon a test leaves to the system (a tutorial's ``twistd`` without ``-n``) is not counted.

Each worker appends one JSON line per test to a file in the run's directory; the controller
(or the one process) reads them all at the end.
"""

import json
import os
import resource
import time
from collections import defaultdict

import pytest

from .parallel import run_directory

TOP = 15


def pytest_addoption(parser):
    parser.addoption("--cpu-report", action="store_true",
                     help="print the processor time of the tests and their processes, by module")


def _cpu(who) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not item.config.getoption("cpu_report"):
        yield
        return
    began, own, children = time.monotonic(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    yield
    line = {"test": item.nodeid.split("@")[0], "wall": time.monotonic() - began,
            "own": _cpu(resource.RUSAGE_SELF) - own, "children": _cpu(resource.RUSAGE_CHILDREN) - children}
    with open(_records(item.config), "a") as f:
        f.write(json.dumps(line) + "\n")


def _records(config):
    return run_directory(config) / f"cpu-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.jsonl"


def summary(lines: list[dict], wall: float, cores: int, top: int = TOP) -> list[str]:
    """The report's lines: the total, then the ``top`` modules by processor time."""
    by_module = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for line in lines:
        entry = by_module[line["test"].split("::")[0]]
        entry[0] += line["own"]
        entry[1] += line["children"]
        entry[2] += line["wall"]
        entry[3] += 1
    own = sum(e[0] for e in by_module.values())
    children = sum(e[1] for e in by_module.values())
    out = [f"{own + children:.0f} s of processor time in {len(lines)} tests ({own:.0f} s in pytest, "
           f"{children:.0f} s in the processes they started), against {cores} cores x {wall:.0f} s = "
           f"{cores * wall:.0f} s",
           f"{'cpu s':>7} {'tests':>5} {'wall s':>7}  module"]
    ranked = sorted(by_module.items(), key=lambda item: -(item[1][0] + item[1][1]))
    for module, (m_own, m_children, m_wall, count) in ranked[:top]:
        out.append(f"{m_own + m_children:7.1f} {count:5d} {m_wall:7.1f}  {module}")
    return out


def pytest_sessionstart(session):
    session.config._cpu_report_began = time.monotonic()


def pytest_terminal_summary(terminalreporter, config):
    if not config.getoption("cpu_report") or "PYTEST_XDIST_WORKER" in os.environ:
        return
    lines = []
    for path in sorted(run_directory(config).glob("cpu-*.jsonl")):
        lines += [json.loads(text) for text in path.read_text().splitlines() if text]
    if not lines:
        return
    wall = time.monotonic() - config._cpu_report_began
    terminalreporter.write_sep("=", f"processor time, top {TOP} modules (tests/cpu_report.py)")
    for text in summary(lines, wall, os.cpu_count() or 1):
        terminalreporter.write_line(text)
