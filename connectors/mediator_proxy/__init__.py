"""``twistd mediator-proxy``: delivers a router mailbox to an agent that cannot poll.

The connector runs next to the agent, behind the firewall; it connects out to
the router, takes the agent's mailbox continuously and POSTs each message to
the agent's HTTP endpoint, acknowledging it only after a 2xx.  The agent's
outbound messages for other mailboxes go the other way through a local
endpoint, spooled on disk while the router is away.
"""


def check_listen_port(value: str, what: str) -> str:
    """PORT as the proxy-mediator takes it (a number: every interface), or a Twisted endpoint string."""
    from ..common import ConfigError

    if value.isdigit():
        if not 0 <= int(value) < 65536:
            raise ConfigError(f"{what}: {value} is not a port")
        return f"tcp:{value}"
    if not value.startswith(("tcp:", "ssl:", "unix:")):
        raise ConfigError(f"{what}: {value!r} is neither a port number nor an endpoint string (tcp:PORT:...)")
    return value
