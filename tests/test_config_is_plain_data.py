"""Loading the configuration is plain data: no Twisted, and no import cycle
between the relayrouter.config package and its modules reading the sections."""

import subprocess
import sys
from pathlib import Path

from .imports import imports_of

ROOT = Path(__file__).resolve().parents[1]

CONFIG = '''
state_dir = "state"
[[listeners]]
type = "websocket"
endpoint = "tcp:0"
[[listeners]]
type = "rawsocket"
endpoint = "tcp:0"
[limits]
max_message_size = 65536
[http]
allowed_origins = ["https://app.example.com"]
[revocation]
admin_roles = ["admin"]
[auth_limits]
burst = 5
[[realms]]
name = "lab"
[realms.outbound]
policy = "drop-newest"
max_bytes = 100000
[realms.limits]
max_pending_calls = 10
[realms.auth.ticket]
principals = [{ authid = "dev", role = "device", secret_env = "CONFIG_TEST_SECRET" }]
[[realms.roles]]
name = "device"
rules = [{ uri = "com.lab.", match = "prefix", allow = ["call", "subscribe"] }]
'''


def test_loading_and_parsing_the_config_loads_no_twisted(tmp_path):
    path = tmp_path / "router.toml"
    path.write_text(CONFIG)
    code = ("import sys\n"
            "import relayrouter.config as cfg\n"
            f"c = cfg.load({str(path)!r})\n"
            "assert c.realms[0].outbound.policy == 'drop-newest', c\n"
            "assert c.realms[0].auth.ticket['dev'].authrole == 'device', c\n"
            "assert c.security.auth_limits.burst == 5\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('twisted', 'treq')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            timeout=60, env={"CONFIG_TEST_SECRET": "s3cret", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_no_module_config_reads_with_imports_it_back():
    """Every relayrouter module the router's file reader (relayrouter.config.router) imports
    (its section readers, the shared checks) imports neither it nor the package's names
    (which are its) at the top or lazily: the cycle stays broken as sections are added."""
    used = {name for name in imports_of(ROOT / "relayrouter" / "config" / "router.py")
            if name.startswith("relayrouter.")}
    files = {f for f in map(_module_file, used) if f is not None and f.name != "__init__.py"}
    assert ROOT / "relayrouter" / "config" / "auth.py" in files and ROOT / "relayrouter" / "config" / "check.py" in files
    for module in files:
        assert not {"relayrouter.config", "relayrouter.config.router"} & imports_of(module), module.relative_to(ROOT)
