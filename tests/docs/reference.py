"""Run a reference page's commands as written: its ``console`` blocks and the files it saves, in
page order, in one ``bash`` (tests/docs/tutorial.py reads and checks them the same way).

Unlike a tutorial, a reference page installs nothing: its commands find ``relayrouter`` and
``twistd`` of the suite's own environment on ``PATH``. And it may name the machine around it
(an sshd on port 22, a device at ``/dev/ttyACM0``, a service on port 5000): a *world*, a bash
script the test passes, sets those up first. Both run in namespaces of their own:

* a network namespace with only its loopback up, so every port a page names is free and
  nothing leaves the machine;
* a mount namespace, so the world may put a device under a fresh ``/dev`` or an account in
  ``/etc/passwd`` without touching the machine's;
* a PID namespace whose first process is the script, so whatever the page left running
  (``twistd`` daemons, ``&`` jobs) is killed by the kernel when the script ends.

As root (CI) the commands run as root; otherwise as ourselves, root of a user namespace.
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

from . import tutorial

# /dev anew: the machine's entries bound into a tmpfs (so the world may add its own),
# pseudo-terminals from a private devpts instance (socat's and sshd's ptys)
FRESH_DEV = r"""
real=$(mktemp -d "$WORLD/dev.XXXX")
mount --rbind /dev "$real"
mount -t tmpfs -o mode=755 dev /dev
for entry in "$real"/* "$real"/.[!.]*; do
  [ -e "$entry" ] || [ -L "$entry" ] || continue
  name=${entry##*/}
  case $name in ptmx|pts) continue;; esac
  if [ -L "$entry" ]; then cp -a "$entry" /dev/
  elif [ -d "$entry" ]; then mkdir "/dev/$name" && mount --rbind "$entry" "/dev/$name"
  else touch "/dev/$name" && mount --bind "$entry" "/dev/$name"; fi
done
mkdir /dev/pts
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
"""


def sshd(user: str) -> str:
    """An sshd on 127.0.0.1:22 where ``user`` (an account added to /etc/passwd, uid 0: the only
    one a user namespace has) logs in with the machine's ssh key; and the machine's ssh client
    configured with that key and the sshd's host key for any name (ssh through a tunnel names
    the far end as it likes)."""
    return rf"""
ssh-keygen -q -t ed25519 -N '' -f "$WORLD/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORLD/user_key"
cp "$WORLD/user_key.pub" "$WORLD/authorized_keys"
{{ cat /etc/passwd; echo '{user}:x:0:0:{user}:/root:/bin/sh'; }} > "$WORLD/passwd"
mount --bind "$WORLD/passwd" /etc/passwd
echo "* $(cut -d' ' -f1,2 "$WORLD/host_key.pub")" > "$WORLD/known_hosts"
printf 'Host *\n  IdentityFile %s\n  UserKnownHostsFile %s\n  BatchMode yes\n' \
  "$WORLD/user_key" "$WORLD/known_hosts" > "$WORLD/ssh_config"
mkdir -p /etc/ssh && touch /etc/ssh/ssh_config && mount --bind "$WORLD/ssh_config" /etc/ssh/ssh_config
mkdir -p /run/sshd
printf '%s\n' "Port 22" "ListenAddress 127.0.0.1" "HostKey $WORLD/host_key" \
  "AuthorizedKeysFile $WORLD/authorized_keys" "PidFile $WORLD/sshd.pid" "UsePAM no" "StrictModes no" \
  "PasswordAuthentication no" "KbdInteractiveAuthentication no" "PermitRootLogin prohibit-password" \
  > "$WORLD/sshd_config"
/usr/sbin/sshd -f "$WORLD/sshd_config" -E "$WORLD/sshd.log"
"""


def environment(home: Path) -> dict:
    """The shell's environment: the suite's ``relayrouter`` and ``twistd`` first on PATH, nothing of
    the test run's own relayrouter settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RELAYROUTER_", "IOT_AGENT_", "MEDIATOR_PROXY_", "PAIRING_AGENT_",
                                "DECRYPT_SEARCH_", "BRIDGE_"))}
    path = [str(Path(sys.executable).parent), *env.get("PATH", "/usr/bin:/bin").split(os.pathsep), "/usr/sbin"]
    env.update(PATH=os.pathsep.join(path), HOME=str(home), PYTHONUNBUFFERED="1")
    # A page's `pip install` runs in the suite's own environment: as root in CI, that is the
    # system's Python, where pip would add a warning (and a newer-pip notice) a reader in a
    # virtualenv never sees.
    env.update(PIP_ROOT_USER_ACTION="ignore", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def section(page: Path, heading: str) -> list:
    """The steps of ``page`` under its heading ``heading`` (a line such as ``## The router``), up to
    the next heading of that level or above: a set-up another page builds on, as that page shows it."""
    lines, fenced, first, last = page.read_text().split("\n"), False, None, None
    level = len(heading.split(" ", 1)[0])
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line == heading:
            first = number
        elif not fenced and first and last is None and 0 < len(line) - len(line.lstrip("#")) <= level \
                and line.lstrip("#").startswith(" "):
            last = number
    assert first, f"{page.name}: no heading {heading!r}"
    last = last or len(lines)
    found = [step for step in tutorial.steps(page) if first <= step.line <= last]
    assert found, f"{page.name}: nothing to do under {heading!r}"
    return found


def run(pages: list[Path], base: Path, world: str = "", timeout: float = 300, before: list = ()) -> None:
    """Run the steps of ``pages`` (one after the other) in an empty directory under ``base``,
    after ``world`` and the steps ``before`` (a set-up of another page's, see :func:`section`);
    AssertionError naming the first step that went wrong."""
    own = [step for page in pages for step in tutorial.steps(page)]
    assert any(isinstance(s, tutorial.Command) for s in own), f"{pages}: no commands"
    page_steps = [*before, *own]
    files, workdir, home, world_dir = (base / name for name in ("files", "work", "home", "world"))
    for directory in (files, workdir, home, world_dir):
        directory.mkdir()
    (files / "script.sh").write_text(tutorial.script(page_steps, files))
    (files / "world.sh").write_text("set -eu\nip link set lo up\n" + world)
    outer = (f"export WORLD={shlex.quote(str(world_dir))}\n"
             f"bash {shlex.quote(str(files / 'world.sh'))} > \"$WORLD/world.log\" 2>&1"
             " || { echo \"the world failed:\"; cat \"$WORLD/world.log\"; exit 99; } >&2\n"
             f"bash {shlex.quote(str(files / 'script.sh'))}\n")
    namespaces = ["unshare", "-nmpf", "--kill-child"] if os.geteuid() == 0 else ["unshare", "-rnmpf", "--kill-child"]
    result = subprocess.run([*namespaces, "bash", "-c", outer], cwd=workdir, env=environment(home),
                            capture_output=True, text=True, timeout=timeout)
    tutorial.verify(page_steps, result, workdir)
