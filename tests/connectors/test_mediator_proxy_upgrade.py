"""The mediator proxy's state directory written by the previous release opens with this one, nothing lost.

The previous release's proxy (``twistd mediator-proxy`` from the tree of tests/previous_release.py)
runs against a router: a message for a mailbox its role may not publish to becomes an outbound dead
letter, then, with the router away, three messages wait in its outbound spool; its options are
remembered in the state directory. This release's proxy then starts on that directory with nothing
but ``--state-dir`` (and its ticket, which is never remembered): it must take its remembered
options, put the three messages into the router in their order, list the dead letter, and retry it.
"""

import base64
import sqlite3
import sys

from .processes import Child, ProxyProcess, RouterProcess
from .test_mediator_proxy_basics import CONFIG as BASIC_CONFIG, TICKET, WATCHER
from ..previous_release import previous_tree  # noqa: F401 (a fixture)

# The basic tests' realm, with roles: the agent may publish only to mailbox.agenta.
CONFIG = BASIC_CONFIG + """
[[realms.roles]]
name = "agent"
[[realms.roles.rules]]
uri = "mailbox.agenta"
allow = ["publish"]
[[realms.roles]]
name = "guest"
[[realms.roles.rules]]
uri = "mailbox.agenta"
allow = ["subscribe"]
"""
CONTENT_TYPE = "application/didcomm-envelope-enc"


def _previous_proxy(tmp_path, tree, router) -> ProxyProcess:
    proxy = ProxyProcess(tmp_path, ["--router", router.ws_url, "--realm", "lab", "--authid", "agentb",
                                    "--agent-endpoint", "http://127.0.0.1:9/inbox"],
                         env={"MEDIATOR_PROXY_TICKET": TICKET})
    proxy.env["PYTHONPATH"] = str(tree)
    proxy.cwd = tree  # python -c puts the working directory first on the path: the previous release's packages
    return proxy


def test_the_previous_releases_spool_dead_letters_and_options_are_kept(tmp_path, previous_tree):
    router = RouterProcess(tmp_path, CONFIG, env={"AGENTB_TICKET": TICKET})
    router.start()
    started = [router]  # stopped whatever happens, last first
    try:
        old = _previous_proxy(tmp_path, previous_tree, router)
        new = ProxyProcess(tmp_path, env={"MEDIATOR_PROXY_TICKET": TICKET})
        watcher = Child("watcher", [sys.executable, "-c", WATCHER, router.ws_url])
        started += [old, new, watcher]
        old.start()
        assert "mediator-proxy: router" in old.output() and "the local API's token" not in old.output()  # 0.1.0's
        code, body, _ = old.request("POST", "/outbound/mailbox.forbidden", b"refused", {"Content-Type": CONTENT_TYPE})
        assert code == 202, body
        old.wait_status(lambda s: s["outbound"]["dead_letters"] == 1, what="the refused message dead-lettered")
        router.stop()
        for i in range(3):
            code, body, _ = old.request("POST", "/outbound/mailbox.agenta", b"kept-%d" % i,
                                        {"Content-Type": CONTENT_TYPE})
            assert code == 202, body
        assert old.status()["outbound"]["spooled"] == 3
        old.stop()  # 0.1.0 exits by the signal (-15); what it spooled was on disk before its 202
        with sqlite3.connect(old.state_dir / "state.sqlite3") as db:
            assert db.execute("SELECT COUNT(*) FROM spool").fetchone() == (4,)

        router.start()
        watcher.start()
        watcher.wait_for("subscribed")
        new.start(args=[])  # the router, realm, authid and agent endpoint: remembered by the previous release
        assert "the local API's token" in new.output()
        received = [watcher.wait_for(r"^\{.*").group(0) for _ in range(3)]
        assert [f'"body": "kept-{i}"' in line for i, line in enumerate(received)] == [True] * 3, received
        assert all(CONTENT_TYPE in line for line in received)
        new.wait_status(lambda s: s["outbound"]["spooled"] == 0 and s["outbound"]["sent"] == 3)
        code, body, _ = new.get("/dead-letters?body=1")
        assert code == 200, body
        (dead,) = body["outbound"]
        assert dead["mailbox"] == "mailbox.forbidden" and "not_authorized" in str(dead), dead
        assert base64.b64decode(dead["body_base64"]) == b"refused" and dead["content_type"] == CONTENT_TYPE
        code, body, _ = new.request("POST", f"/dead-letters/outbound/{dead['seq']}/retry")
        assert code == 202 and body["mailbox"] == "mailbox.forbidden", body
        new.wait_status(lambda s: s["outbound"]["dead_letters"] == 1 and s["outbound"]["spooled"] == 0,
                        what="the retried message refused again")
    finally:
        for child in reversed(started):
            child.stop()
    with sqlite3.connect(new.state_dir / "state.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
