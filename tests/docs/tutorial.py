"""Run a tutorial page as a reader types it: its shell steps in order, its files saved where it says.

A page's fenced blocks, top to bottom, are the reader's actions:

* a ``console`` block holds commands (``$ `` lines; a line ending in ``\\``
  continues on the next) each followed by what it prints. The printed lines
  must match what the command prints, ``...`` standing for any text (within a
  line, or whole lines). A command must exit 0.
* a block whose first line is a comment naming a file (``# client.py``,
  ``# router.toml``) is saved under that name, as the reader is told to.
* anything else (a block of output in ``text``, JSON shown for reading) is
  not an action.

The commands run in one ``bash``, so ``cd`` and ``. venv/bin/activate`` last
as they do for the reader, in an empty directory, inside a network namespace
of their own (only its loopback: the default ports are free and nothing leaves
the machine), as a normal user (``nobody`` when the suite runs as root, as CI
does: a reader is not root, and Mosquitto started by root would switch users).  ``pip install`` installs from a local wheelhouse (the built
wheel and its dependencies) through ``PIP_NO_INDEX`` and ``PIP_FIND_LINKS``,
which is how the reader's ``pip install relayrouter`` reaches the version
under test.
"""

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S)
FILE_COMMENT = re.compile(r"^(?:#|//) (?P<name>[\w.-]+\.(?:py|toml|json|env|sh|txt|conf))$")
MARK = "@@tutorial-step"


@dataclass(frozen=True)
class Command:
    line: int  # in the page, for messages
    text: str
    expected: str
    page: str = ""  # its file name, for messages


@dataclass(frozen=True)
class SaveFile:
    line: int
    name: str
    content: str
    page: str = ""


def steps(page: Path) -> list:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        info, body = match["info"].strip(), match["body"]
        first = body.split("\n", 1)[0]
        if info == "console":
            found += [Command(c.line, c.text, c.expected, page.name) for c in _commands(body, line + 1)]
        elif FILE_COMMENT.match(first) and not info.startswith("{"):
            found.append(SaveFile(line, FILE_COMMENT.match(first)["name"], body, page.name))
    return found


def _commands(body: str, line: int) -> list[Command]:
    commands, current, expected, start = [], None, [], line
    for number, raw in enumerate(body.rstrip("\n").split("\n"), line):
        if current is not None and current.endswith("\\"):
            current = current + "\n" + raw
        elif raw.startswith("$ "):
            if current is not None:
                commands.append(Command(start, current, "\n".join(expected)))
            current, expected, start = raw[2:], [], number
        else:
            assert current is not None, f"line {number}: output before any command"
            expected.append(raw)
    if current is not None:
        commands.append(Command(start, current, "\n".join(expected)))
    return commands


def matches(expected: str, actual: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in expected.strip().split("..."))
    return re.fullmatch(pattern, actual.strip(), re.S) is not None


def script(page_steps: list, files_dir: Path) -> str:
    """The bash script: each step between marks carrying its index and exit status."""
    lines = ["set -u"]
    for index, step in enumerate(page_steps):
        lines.append(f"printf '\\n{MARK} {index} start\\n'")
        if isinstance(step, SaveFile):
            source = files_dir / f"{index}-{step.name}"
            source.write_text(step.content)
            lines.append(f"cp {shlex_quote(source)} {shlex_quote(step.name)}; rc=$?")
        else:
            lines.append(f"{{ {step.text}\n}} 2>&1 < /dev/null; rc=$?")
        lines.append(f"printf '\\n{MARK} {index} exit %d\\n' $rc")
        lines.append("[ $rc -eq 0 ] || exit 100")
    return "\n".join(lines) + "\n"


def shlex_quote(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


@dataclass(frozen=True)
class Outcome:
    index: int
    output: str
    status: int


def outcomes(output: str) -> list[Outcome]:
    found = []
    for match in re.finditer(rf"\n{MARK} (\d+) start\n(.*?)\n{MARK} \1 exit (\d+)\n", output, re.S):
        found.append(Outcome(int(match[1]), match[2], int(match[3])))
    return found


def reader_environment(wheelhouse: Path, home: Path) -> dict:
    """A shell's environment with nothing of the test run's virtualenv or checkout."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and not os.path.exists(os.path.join(p, "activate"))]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_", "RELAYROUTER_", "IOT_AGENT_", "MEDIATOR_PROXY_",
                                "PAIRING_AGENT_", "DECRYPT_SEARCH_"))}
    env.update(PATH=os.pathsep.join(path), HOME=str(home), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse),
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1", PYTHONUNBUFFERED="1",
               # pip compiles every module it installs (Twisted's tests too): more than half of a
               # `pip install relayrouter`'s processor time, 5 of 8 s. Compiled when first imported
               # instead, what the reader's commands run compiles in about a second.
               PIP_COMPILE="false")
    return env


NOBODY = 65534  # Debian's nobody and nogroup


def as_reader(argv: list[str]) -> list[str]:
    """argv in a new network namespace whose loopback is up, as ``nobody`` when we are root
    (else as ourselves, in a user namespace)."""
    if os.geteuid() != 0:
        return ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "tutorial", *argv]
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--reset-env"]
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "tutorial", *drop, "env", "-i",
            *argv]


def _readers_directory(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir(mode=0o755)
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    return path


def run(page: Path, base: Path, wheelhouse: Path, timeout: float = 600, before: Path | None = None) -> None:
    """Run ``page``'s steps in an empty directory under ``base``; AssertionError naming the first
    step that went wrong. ``before``: a page whose steps come first (the how-to guides' set-up)."""
    page_steps = steps(page)
    assert page_steps, f"{page}: no steps"
    first = steps(before) if before is not None else []
    page_steps = first + page_steps
    base.chmod(0o755)
    house = base / "wheelhouse"
    shutil.copytree(wheelhouse, house, copy_function=os.link)  # where the reader may read it
    house.chmod(0o755)
    files = base / "files"
    files.mkdir(mode=0o755)
    workdir, home = _readers_directory(base, "reader"), _readers_directory(base, "home")
    (files / "script.sh").write_text(script(page_steps, files))
    env = reader_environment(house, home)
    argv = as_reader([f"{k}={v}" for k, v in env.items()] + ["bash", str(files / "script.sh")]) \
        if os.geteuid() == 0 else as_reader(["bash", str(files / "script.sh")])
    try:
        result = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        stop_left_behind(workdir)
    verify(page_steps, result, workdir)


def verify(page_steps: list, result: subprocess.CompletedProcess, workdir: Path) -> None:
    """AssertionError naming the first step of ``page_steps`` that did not run, failed, or printed
    something else than its page says."""
    done = {o.index: o for o in outcomes("\n" + result.stdout)}
    for index, step in enumerate(page_steps):
        where = f"{getattr(step, 'page', '')}:{step.line}"
        outcome = done.get(index)
        if outcome is None:
            raise AssertionError(f"{where}: never ran (bash exited {result.returncode})\n{result.stdout[-3000:]}"
                                 f"\n{result.stderr[-3000:]}{_logs(workdir)}")
        if outcome.status != 0:
            raise AssertionError(f"{where}: {_describe(step)} exited {outcome.status}:\n{outcome.output}"
                                 f"{_logs(workdir)}")
        if isinstance(step, Command) and not matches(step.expected, outcome.output):
            raise AssertionError(f"{where}: $ {step.text}\nprinted:\n{outcome.output}\nthe page says:\n"
                                 f"{step.expected}{_logs(workdir)}")


def _describe(step) -> str:
    return f"$ {step.text}" if isinstance(step, Command) else f"saving {step.name}"


def _logs(workdir: Path) -> str:
    return "".join(f"\n--- {log.relative_to(workdir)}:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                   for log in sorted(workdir.rglob("*.log")))


def stop_left_behind(workdir: Path) -> None:
    """SIGKILL what a failed tutorial left running: the processes named in its pid files."""
    for pidfile in workdir.rglob("*.pid"):
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError, FileNotFoundError):  # gone meanwhile
            pass
