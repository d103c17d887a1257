import subprocess
import sys


def test_importing_the_core_loads_no_twisted():
    code = (
        "import sys\n"
        "import relayrouter.core.router, relayrouter.core.session, relayrouter.core.broker\n"
        "import relayrouter.core.dealer, relayrouter.core.matching, relayrouter.testing\n"
        "import relayrouter.core.authorization, relayrouter.core.revocation, relayrouter.core.procedures\n"
        "import relayrouter.core.history, relayrouter.core.mailbox, relayrouter.core.records\n"
        "import relayrouter.store.memory\n"
        "bad = sorted(m for m in sys.modules if m == 'twisted' or m.startswith('twisted.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
