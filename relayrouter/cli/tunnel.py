"""``relayrouter tunnel host|client``: TCP over the router (ssh to a machine behind NAT).

    relayrouter tunnel host   --router wss://relay.example.org/ws --realm lab --name lab42 --target 127.0.0.1:22
    relayrouter tunnel client --router wss://relay.example.org/ws --realm lab --name lab42 --listen tcp:2222:interface=127.0.0.1
    ssh -o ProxyCommand="relayrouter tunnel client --router ... --realm lab --name lab42 --stdio" pi@lab42

Both sides are WAMP sessions kept up by the connector base's
RouterConnection (reconnect forever with backoff, a refused credential
retried slowly), authenticated with a JWT.  See relay/tunnel.py for the
protocol and its flow control.
"""

import argparse
import sys

from . import CliError
from ._relay import add_token_arguments, env, run_reactor, start_logging, token_source

ENV = "RELAYROUTER_TUNNEL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("side", choices=("host", "client"), help="host: next to the server; client: next to you")
    parser.add_argument("--router", default=env(ENV, "ROUTER"), metavar="URL",
                        help=f"the router's WAMP URL, ws(s)://host:port/ws [env {ENV}_ROUTER]")
    parser.add_argument("--realm", default=env(ENV, "REALM"), help=f"realm [env {ENV}_REALM]")
    parser.add_argument("--name", default=env(ENV, "NAME"), help=f"the tunnel's name (a URI component) [env {ENV}_NAME]")
    add_token_arguments(parser, ENV)
    parser.add_argument("--target", default=env(ENV, "TARGET"), metavar="HOST:PORT",
                        help="host side: where streams go, e.g. 127.0.0.1:22")
    parser.add_argument("--listen", default=env(ENV, "LISTEN"), metavar="ENDPOINT",
                        help="client side: a local listener, e.g. tcp:2222:interface=127.0.0.1")
    parser.add_argument("--stdio", action="store_true", help="client side: one stream on stdin/stdout (ProxyCommand)")
    parser.add_argument("--window", type=int, default=256 * 1024, metavar="BYTES",
                        help="unacknowledged bytes per stream and direction (default 262144)")
    parser.add_argument("--verbose", action="store_true", help="debug logging on stderr")


def run(args: argparse.Namespace) -> int:
    from relayrouter.client.credentials import Credentials
    from relayrouter.client.errors import ConfigError
    from relayrouter.client.router import RouterSettings

    for name in ("router", "realm", "name"):
        if not getattr(args, name):
            raise CliError(f"--{name} is required (or {ENV}_{name.upper()})")
    if not all(c.isalnum() or c in "-_" for c in args.name):
        raise CliError(f"--name {args.name}: letters, digits, - and _ only")
    if args.window < 16 * 1024:
        raise CliError("--window: at least 16384 bytes")
    target = _target(args) if args.side == "host" else None
    if args.side == "client" and bool(args.listen) == bool(args.stdio):
        raise CliError("client side: give one of --listen ENDPOINT or --stdio")
    token = token_source(args)
    try:
        settings = RouterSettings(args.router, args.realm, Credentials("jwt", secret=token()))
    except ConfigError as e:
        raise CliError(str(e)) from None
    start_logging(args.verbose)
    if args.side == "host":
        return run_reactor(lambda done: _host(settings, args, target))
    return run_reactor(lambda done: _client(settings, args, done))


def _target(args) -> tuple[str, int]:
    if not args.target:
        raise CliError("host side: --target HOST:PORT is required")
    host, _, port = args.target.rpartition(":")
    if not host or not port.isdigit():
        raise CliError(f"--target {args.target}: expected HOST:PORT")
    return host, int(port)


def _host(settings, args, target) -> None:
    from twisted.internet import reactor

    from relayrouter.client.router import RouterConnection

    from ..relay.tunnel import TunnelHost

    host = TunnelHost(reactor, args.name, target, args.window)
    RouterConnection(settings, on_join=host.on_join, on_leave=host.on_leave).startService()


def _client(settings, args, done) -> None:
    from twisted.internet import endpoints, protocol, reactor, stdio

    from relayrouter.client.router import RouterConnection

    from ..relay.tunnel import LocalConnection, TunnelClient

    client = TunnelClient(args.name, args.window)
    RouterConnection(settings, on_join=client.on_join, on_leave=client.on_leave).startService()
    if args.stdio:
        def stdio_lost(proto) -> None:
            done.stop(0)

        client.local_lost = stdio_lost
        client.ready.addCallback(lambda _: stdio.StandardIO(LocalConnection(client)))
        return
    factory = protocol.Factory()
    factory.buildProtocol = lambda addr: LocalConnection(client)

    def listening(port) -> None:
        print(f"relayrouter tunnel: listening on {port.getHost()}", file=sys.stderr, flush=True)

    def failed(failure) -> None:
        print(f"relayrouter tunnel: --listen {args.listen}: {failure.getErrorMessage()}", file=sys.stderr)
        done.stop(1)

    client.ready.addCallback(
        lambda _: endpoints.serverFromString(reactor, args.listen).listen(factory).addCallbacks(listening, failed))
