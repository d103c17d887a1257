"""``twistd mediator-proxy``: delivers a router mailbox to an agent that cannot poll.

The connector runs next to the agent, behind the firewall; it connects out to
the router, takes the agent's mailbox continuously and POSTs each message to
the agent's HTTP endpoint, acknowledging it only after a 2xx.  The agent's
outbound messages for other mailboxes go the other way through a local
endpoint, spooled on disk while the router is away.
"""
