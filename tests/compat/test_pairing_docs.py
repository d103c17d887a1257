"""README "Try it: both sides of a pair on one machine", run as written: the "Pairs"
configuration, the ``relayrouter pki`` commands, the router, a REST service, a
pairing agent on each side and the two ``curl`` commands, in an empty directory.
What differs from the page: free ports instead of 5000-6000, the listener on
127.0.0.1 instead of 0.0.0.0, and waits for each process to be ready."""

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

from ..connectors.processes import Child

OWN_TERMINAL = "# its own terminal"
PORTS = ("5050", "5000", "5001", "5002", "5011", "5012", "6000")


def blocks(heading: str, kind: str) -> str:
    from ..documentation import everything

    text = everything()
    section = text[text.index(heading):]
    return re.search(rf"```{kind}\n(.*?)```", section, re.S).group(1)


def free_ports() -> dict:
    sockets = [socket.socket() for _ in PORTS]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = {old: str(s.getsockname()[1]) for old, s in zip(PORTS, sockets)}
    for s in sockets:
        s.close()
    return ports


def localised(text: str, ports: dict) -> str:
    return re.sub(r"\b(" + "|".join(PORTS) + r")\b", lambda m: ports[m.group(1)], text)


def run(command: str, cwd: Path, path: str) -> str:
    done = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**Child("step", []).env, "PATH": path})
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def test_the_pairs_certificate_commands_are_the_walkthroughs():
    """The "Pairs" section's relayrouter pki lines are run by the walk-through below."""
    issued = blocks("Issue the certificates with `relayrouter pki`", "sh").splitlines()
    walk = blocks("## Try it: both sides of a pair on one machine", "sh").splitlines()
    assert issued and all(line in walk for line in issued if line.strip())


def test_the_pairing_walkthrough_runs_as_written(tmp_path):
    ports = free_ports()
    toml = blocks("# Pairs: a gateway and its manager", "toml")
    steps = [line for line in blocks("## Try it: both sides of a pair on one machine", "sh").splitlines()
             if line.strip()]
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # relayrouter, twistd, python3: the suite's own
    (tmp_path / "pairs.toml").write_text(localised(toml, ports).replace("interface=0.0.0.0", "interface=127.0.0.1"))
    children, outputs = [], []
    try:
        for step in steps:
            command = localised(step.split("#", 1)[0].strip() if OWN_TERMINAL in step else step, ports)
            if OWN_TERMINAL not in step:
                outputs.append(run(command, tmp_path, path))
                continue
            child = Child(command.split()[0], ["bash", "-c", f"exec {command}"], env={"PATH": path}, cwd=tmp_path)
            child.start()
            children.append(child)
            ready(child, command)
        listing, event = outputs[-2:]
        assert "Directory listing for /" in listing  # python's http.server, via manager agent, router, gateway agent
        assert json.loads(event) == {"published": "DPP:DPPOnboardingCompleteEvent"}
        manager = children[-1]
        manager.wait_for(r"notification DPP:DPPOnboardingCompleteEvent from the gateway")
    finally:
        for child in reversed(children):
            child.stop()


def ready(child: Child, command: str) -> None:
    """Wait for what each long-running step prints when it is ready."""
    if "relayrouter --config" in command:
        child.wait_for(r"relayrouter listening: WebSocket at wss://127\.0\.0\.1:")
    elif "http.server" in command:
        child.wait_for(r"Serving HTTP on")
    else:
        child.wait_for(r"pairing-agent: the (gateway|manager) of pair 8675309/00224dd149bb", 60)
