"""Sampling profiles of the router during a run, with py-spy (``pip install py-spy``).

``run.py --profile`` starts ``py-spy record`` on relayrouter's process at the
generator's start mark, for the measured window, writing collapsed stacks
(``--format raw``: one line per distinct stack, ``frame;frame;... count``)
next to the results.  Feed the file to any flamegraph tool, or read the
summary this module prints: where the samples' innermost frames were (self
time) and which functions were on the stack (inclusive time).

py-spy runs on the generator's core and interrupts the router to sample it:
profiled runs are slower and are marked so in the results.
"""

import shutil
import subprocess
from collections import Counter
from pathlib import Path


def available() -> bool:
    return shutil.which("py-spy") is not None


def start(pid: int, seconds: float, out: Path, core: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["taskset", "-c", str(core), "py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)),
         "--rate", "250", "--format", "raw", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(path: Path, top: int = 15) -> str:
    own, anywhere, total = Counter(), Counter(), 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            anywhere[frame] += n
    if not total:
        return f"{path.name}: no samples"
    lines = [f"{path.name}: {total} samples", "  self %   function (innermost frame)"]
    lines += [f"  {100 * n / total:6.1f}   {f}" for f, n in own.most_common(top)]
    lines.append("  incl %   function (anywhere on the stack; the reactor's trunk, on >= 90%, left out)")
    branches = [(f, n) for f, n in anywhere.most_common() if n < 0.9 * total]
    lines += [f"  {100 * n / total:6.1f}   {f}" for f, n in branches[:top]]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """'send (relayrouter/transport/connection.py:120)' without the line and site-packages prefix."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/wt-bench/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:]:
        print(summarize(Path(name)))
