"""CPU time and memory of process trees, read from /proc (Linux only).

A :class:`Snapshot` is taken at each mark the load generator prints; the
difference of two is a :class:`Usage`: CPU% of the router's process tree, of
the generator, of every other process on the machine (noise), and how busy
each core was.  100% means one core fully used.
"""

import os
import time
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()  # the name may hold spaces and parentheses


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process; 0 when it is gone."""
    try:
        fields = _stat_fields(pid)
    except (OSError, ValueError):
        return 0
    return int(fields[11]) + int(fields[12])


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks after boot); None when it is gone or a zombie."""
    try:
        fields = _stat_fields(pid)
    except (OSError, ValueError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB
    except (OSError, ValueError, IndexError):
        return 0


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (Crossbar runs its router in a child process)."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        try:
            children.setdefault(int(_stat_fields(pid)[1]), []).append(pid)
        except (OSError, ValueError, IndexError):
            continue
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def core_jiffies() -> dict[str, tuple[int, int]]:
    """Per core: (busy, total) jiffies since boot; busy includes irq and softirq (loopback TCP)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *values = line.split()
            numbers = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            total = sum(numbers)
            out[name] = (total - numbers[3] - numbers[4], total)
    return out


@dataclass(frozen=True)
class Snapshot:
    at: float
    router: int  # CPU ticks of the router's tree
    router_rss_kb: int
    generator: int
    others: dict  # pid -> ticks, every other process
    cores: dict


def snapshot(router_pids: list[int], generator_pid: int) -> Snapshot:
    mine = set(router_pids) | {generator_pid, os.getpid()}
    return Snapshot(
        at=time.monotonic(),
        router=sum(cpu_ticks(p) for p in router_pids),
        router_rss_kb=sum(rss_kb(p) for p in router_pids),
        generator=cpu_ticks(generator_pid),
        others={p: cpu_ticks(p) for p in all_pids() if p not in mine},
        cores=core_jiffies(),
    )


@dataclass(frozen=True)
class Usage:
    seconds: float
    router_cpu: float
    generator_cpu: float
    others_cpu: float
    router_core_busy: float | None
    generator_core_busy: float | None
    router_rss_kb_start: int
    router_rss_kb_end: int

    def as_dict(self) -> dict:
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def usage(a: Snapshot, b: Snapshot, router_core: int, generator_core: int) -> Usage:
    seconds = max(b.at - a.at, 1e-6)

    def pct(ticks: int) -> float:
        return 100.0 * ticks / CLOCK_TICKS / seconds

    def core(n: int) -> float | None:
        name = f"cpu{n}"
        if name not in a.cores or name not in b.cores:
            return None
        busy = b.cores[name][0] - a.cores[name][0]
        total = b.cores[name][1] - a.cores[name][1]
        return 100.0 * busy / total if total else None

    others = sum(t - a.others.get(p, 0) for p, t in b.others.items())
    return Usage(seconds, pct(b.router - a.router), pct(b.generator - a.generator), pct(others),
                 core(router_core), core(generator_core), a.router_rss_kb, b.router_rss_kb)
