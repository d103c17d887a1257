import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_decision_modules_load_no_twisted():
    code = ("import sys\n"
            "import relayrouter.auth.ticket, relayrouter.auth.wampcra, relayrouter.auth.cryptosign\n"
            "import relayrouter.auth.tls, relayrouter.auth.jwt\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('twisted', 'treq')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
