"""Hand-made mutants for the boundary code mutmut cannot measure.

    python scripts/handmade_mutants.py                 every module in scripts/handmade-mutants.toml
    python scripts/handmade_mutants.py 'relay access'  the modules whose name contains the words

mutmut reports every mutant of the relay's access and scope checks killed
(their tests drive a live reactor), and cannot see code the tests run in a
process of their own.  This runner breaks the source file itself, one listed
mutation at a time, so whatever runs it (the test process, a router or
broker client the test starts) runs the broken line; it runs the module's
tests with ``-x``, counts the mutant killed when they fail, and puts the file
back (also when interrupted).  A mutation whose text is not found exactly
once, or that does not compile, stops the run: the list must follow the code.

A mutant listed with ``survives = "reason"`` is one the tests are known not
to kill, for the reason given (an equivalent mutant, a log message...); it is
still run, and reported as a survivor with its reason, or as "now killed".
"""

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIST = ROOT / "scripts" / "handmade-mutants.toml"
TIMEOUT = 900  # seconds for one mutant's tests; a mutant that hangs them is killed (as mutmut counts it)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _interrupted)  # the file is put back on the way out
    modules = tomllib.loads(LIST.read_text())["module"]
    wanted = " ".join(argv).lower()
    modules = [m for m in modules if wanted in m["name"].lower()]
    if not modules:
        print(f"no module in {LIST.name} is named like {wanted!r}", file=sys.stderr)
        return 2
    for module in modules:
        check(module)
    totals = [run_module(module) for module in modules]
    print()
    for module, (killed, total, survivors) in zip(modules, totals):
        print(f"{module['name']}: {killed}/{total} killed ({100 * killed / total:.0f} %)")
        for mutant, reason in survivors:
            print(f"    survived: {describe(mutant)} -- {reason}")
    return 0


def check(module: dict) -> None:
    """Every mutation applies exactly once and compiles; the tests pass on the unbroken code."""
    source = (ROOT / module["file"]).read_text()
    for mutant in module["mutant"]:
        count = source.count(mutant["old"])
        if count != 1:
            raise SystemExit(f"{module['name']}: {mutant['old']!r} occurs {count} times in {module['file']}")
        compile(source.replace(mutant["old"], mutant["new"]), module["file"], "exec")


def run_module(module: dict) -> tuple[int, int, list]:
    path = ROOT / module["file"]
    original = path.read_text()
    print(f"== {module['name']} ({module['file']}): {len(module['mutant'])} mutants; "
          f"tests: {' '.join(module['tests'])}", flush=True)
    if not tests_pass(module, path, original):
        raise SystemExit(f"{module['name']}: the tests fail on the unbroken code")
    killed, survivors = 0, []
    for i, mutant in enumerate(module["mutant"], 1):
        started = time.monotonic()
        caught = not tests_pass(module, path, original.replace(mutant["old"], mutant["new"]))
        verdict = "killed" if caught else "SURVIVED"
        if caught and "survives" in mutant:
            verdict += " (listed as a survivor: now killed)"
        print(f"  [{i}/{len(module['mutant'])}] {verdict:8} {time.monotonic() - started:5.0f} s  "
              f"{describe(mutant)}", flush=True)
        if caught:
            killed += 1
        else:
            survivors.append((mutant, mutant.get("survives", "NO REASON GIVEN: a test is missing")))
    return killed, len(module["mutant"]), survivors


def tests_pass(module: dict, path: Path, text: str) -> bool:
    original = path.read_text()
    try:
        write(path, text)
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *module["tests"]]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            return process.wait(TIMEOUT) == 0
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return False
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    finally:
        write(path, original)


def write(path: Path, text: str) -> None:
    """In place (an editable install links to this file), with no stale bytecode left to load."""
    with open(path, "w") as f:
        f.write(text)
    for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
        cached.unlink()


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def describe(mutant: dict) -> str:
    return mutant.get("what") or f"{mutant['old'].strip()!r} -> {mutant['new'].strip()!r}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
