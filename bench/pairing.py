"""REST over RPC through a pair: client -> manager's pairing agent -> router (mTLS) ->
gateway's pairing agent -> the gateway's REST service, and back.

    python bench/pairing.py [--seconds 5] [--clients 8]

Starts, on 127.0.0.1, each as its own process: a router with a pairing realm
on a TLS listener that requires client certificates (certificates made with
``relayrouter pki``'s functions), the two agents, and a minimal twisted.web
REST service answering ``GET /json`` (a small JSON body) and ``GET /blob``
(1 MiB of binary). ``--clients`` threads with one keep-alive HTTP connection
each send requests back to back for ``--seconds``, first straight to the
service (the floor: what the service and the client manage alone), then
through the pair. Prints requests/s and p50/p99 latency for each, and the
CPU each process used during the paired runs (100% = one core).
"""

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402

from bench.httpload import load  # noqa: E402
from bench.mediator_proxy import Proc, twistd  # noqa: E402
from bench.procstat import CLOCK_TICKS, cpu_ticks  # noqa: E402
from relayrouter.cli import pki  # noqa: E402

PAIR = "8675309/00224dd149bb"
ROUTER_TOML = """
state_dir = "{state}"
[[listeners]]
type = "websocket"
endpoint = "tcp:0:interface=127.0.0.1"
[listeners.tls]
certificate = "{pki}/server/server.crt"
key = "{pki}/server/server.key"
ca = "{pki}/ca/ca.crt"
client_certificates = "required"
[[realms]]
name = "micronets"
[realms.auth.tls]
rules = [{{ subject_cn = "(?P<authid>(?P<cls>gateway|manager):[^:]+:[^:]+)", role = "{{cls}}" }}]
[realms.pairing]
"""
SERVICE = r"""
import sys
from twisted.internet import reactor
from twisted.web import resource, server
BLOB = bytes(range(256)) * 4096
class Api(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        if request.path == b"/blob":
            request.setHeader("content-type", "application/octet-stream")
            return BLOB
        request.setHeader("content-type", "application/json")
        return b'{"subnets": [{"subnetId": "wired-1", "ipv4Network": {"network": "10.40.0.0"}}]}'
site = server.Site(Api())
site.log = lambda request: None
port = reactor.listenTCP(0, site, interface="127.0.0.1")
sys.stdout.write("listening %d\n" % port.getHost().port)
sys.stdout.flush()
reactor.run()
"""


def make_pki(root: Path) -> None:
    ca = pki.make_ca("bench CA", 2)
    pki.write(root / "ca", "ca", ca)
    pki.write(root / "server", "server", pki.make_leaf(ca, "localhost", [x509.DNSName("localhost")],
                                                        ExtendedKeyUsageOID.SERVER_AUTH, 2))
    for cls in ("gateway", "manager"):
        pki.write(root / cls, "client", pki.make_leaf(ca, pki.pair_cn(PAIR, cls), [],
                                                      ExtendedKeyUsageOID.CLIENT_AUTH, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="relayrouter-bench-pairing-"))
    make_pki(tmp / "pki")
    (tmp / "router.toml").write_text(ROUTER_TOML.format(state=tmp / "state", pki=tmp / "pki"))
    procs = []
    try:
        router = Proc("router", twistd("relayrouter", "--config", str(tmp / "router.toml")))
        procs.append(router)
        line = router.wait_for("WebSocket at wss://")
        router_port = int(re.search(r"wss://127\.0\.0\.1:(\d+)/", line).group(1))
        service = Proc("service", [sys.executable, "-c", SERVICE])
        procs.append(service)
        service_port = int(service.wait_for("listening").split()[-1])
        ports = {}
        for cls in ("gateway", "manager"):
            agent = Proc(f"{cls} agent", twistd(
                "pairing-agent", "--router", f"wss://localhost:{router_port}/ws", "--realm", "micronets",
                "--auth", "tls", "--tls-cert", str(tmp / "pki" / cls / "client.crt"),
                "--tls-key", str(tmp / "pki" / cls / "client.key"), "--ca-cert", str(tmp / "pki" / "ca" / "ca.crt"),
                "--local-service", f"http://127.0.0.1:{service_port}", "--listen", "tcp:0:interface=127.0.0.1",
                "--control", "tcp:0:interface=127.0.0.1", "--state-dir", str(tmp / f"{cls}-state")))
            procs.append(agent)
            ports[cls] = int(re.search(r":(\d+)/", agent.wait_for("REST port listening")).group(1))
            agent.wait_for(f"pairing-agent: the {cls} of pair")
        print(f"| request | path | requests/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
        for path, label in (("/json", "small JSON"), ("/blob", "1 MiB binary")):
            request = lambda: ("GET", path, None, {})  # noqa: E731
            direct = load(service_port, request, args.seconds, args.clients)
            before = {p.name: cpu_ticks(p.proc.pid) for p in procs}
            paired = load(ports["manager"], request, args.seconds, args.clients)
            cpu = {p.name: (cpu_ticks(p.proc.pid) - before[p.name]) / CLOCK_TICKS / args.seconds * 100
                   for p in procs}
            for name, r in (("direct HTTP (floor)", direct), ("through the pair", paired)):
                flag = f" ({r['errors']} errors)" if r["errors"] else ""
                print(f"| {label} | {name} | {r['rps']:.0f}{flag} | {r['p50']:.2f} | {r['p99']:.2f} |")
            print("|  | CPU during the paired run | " + ", ".join(f"{n} {c:.0f}%" for n, c in cpu.items()) + " | | |")
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    main()
