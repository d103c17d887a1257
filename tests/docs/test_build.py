"""docs/ builds with Sphinx without a warning: -W (warnings are errors) and nitpicky, so a link to a
page or heading that does not exist, a bad directive or an unreadable image fails the build."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(600)


def test_the_site_builds_without_a_warning(tmp_path):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html",
                             "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stderr.strip(), result.stderr
    print(f"sphinx-build html: {time.monotonic() - started:.1f} s")
    html = tmp_path / "html"
    # The option tables are read from the plugins: a row of each.
    twistd = (html / "reference" / "twistd.html").read_text()
    for option in ("--websocket", "--mqtt-host", "--agent-endpoint", "--local-service", "--key-file"):
        assert option in twistd, option
    assert "IOT_AGENT_MQTT_HOST" in twistd
    # ... as tables: a directive's content is parsed as Markdown, where reStructuredText is shown as text.
    assert "list-table" not in twistd and "list-table" not in configuration_page(html)
    assert re.search(r"<td><p><code[^>]*><span class=\"pre\">--websocket=VALUE</span></code></p></td>", twistd)
    # The key tables are read from the configuration checkers.
    configuration = configuration_page(html)
    for key in ("realms[].limits.max_sessions", "cluster.tls.hostname", "http_bridge.webhooks[].token_env",
                "http.auth.keys[].jwks_url", "reports[].bucket"):
        assert key in configuration, key
    # The WAMP reference lists what the router registers, one row per URI.
    wamp = (html / "reference" / "wamp.html").read_text()
    for uri in ("relayrouter.mailbox.take", "wamp.session.kill_by_authrole", "iot_agent.device.actuate"):
        assert f'<span class="pre">{uri}</span></code></p></td>' in wamp, uri
    # The HTTP reference's operations are read from the router's OpenAPI document, written beside the pages.
    http_page = (html / "reference" / "http.html").read_text()
    for operation in ("POST /publish", "DELETE /realms/{name}", "GET /openapi.json"):
        assert operation.replace(" ", '</span> <span class="pre">') in http_page, operation
    document = json.loads((html / "openapi" / "relayrouter.json").read_text())
    assert document["openapi"].startswith("3.1") and "/ws" in document["paths"]
    for name, path in (("decrypt-search", "/search"), ("mediator-proxy", "/dead-letters"),
                       ("mediator-proxy-didcomm", "/receive_mediator_invitation"),
                       ("pairing-agent", "/events/{name}"), ("iot-agent", "/device/{device_id}/actuate")):
        document = json.loads((html / "openapi" / f"{name}.json").read_text())
        assert path in document["paths"], name
    # The architecture diagram was drawn.
    assert list((html / "_images").glob("graphviz-*.svg"))


def configuration_page(html: Path) -> str:
    return (html / "reference" / "configuration.html").read_text()
