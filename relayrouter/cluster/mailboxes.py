"""Mailbox notices between the nodes (core/mailbox_sync.py says what they do).

One subject, ``<prefix>.mbx``, msgpack:

* ``[1, node, "put", realm, mailbox, id, timestamp, size, sender, attempts, payload]``
  with ``payload`` = ``[args, kwargs]``, or nil when the message is larger
  than ``MAX_NOTICE_PAYLOAD`` (or cannot be packed): the other nodes read it
  from the store then;
* ``[1, node, "gone", realm, mailbox, [ids]]``;
* ``[1, node, "take", realm, mailbox]``.

Notices are sent only while NATS is connected (never late: a stale "take"
would end a newer take elsewhere); each node reads its mailboxes back from
the store when it (re)connects, which makes up for whatever it missed.
"""

import msgpack
from twisted.logger import Logger

from ..core.mailbox_sync import SharedMailboxes
from ..core.records import MailboxMessage

log = Logger(namespace="relayrouter.cluster")

WIRE_VERSION = 1
MAX_NOTICE_PAYLOAD = 256 * 1024  # bytes of a message carried in its notice; larger ones are read back


def mailbox_subject(prefix: str) -> str:
    return f"{prefix}.mbx"


class MailboxPeers:
    """This node's side of the notices, for every realm with mailboxes."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.node = cluster.config.node
        self.subject = mailbox_subject(cluster.config.subject_prefix)
        self.realms: dict[str, SharedMailboxes] = {}
        self.sent = 0
        self.unsent = 0  # notices not sent: NATS was not connected
        cluster.handlers[self.subject] = self._heard
        cluster.bridge.subscribe(self.subject)
        cluster.state_listeners.append(self._state)

    def share(self, mailboxes) -> SharedMailboxes:
        """A realm's mailboxes, kept in step with the other nodes' from now on."""
        shared = self.realms[mailboxes.realm.name] = SharedMailboxes(mailboxes, self)
        return shared

    def forget(self, realm: str) -> None:
        self.realms.pop(realm, None)

    # --------------------------------------------------- to the other nodes

    def put(self, realm: str, message: MailboxMessage) -> None:
        payload = None
        if message.size <= MAX_NOTICE_PAYLOAD:
            payload = [message.args, message.kwargs]
        head = [WIRE_VERSION, self.node, "put", realm, message.mailbox, message.id, message.timestamp,
                message.size, message.sender, message.attempts]
        try:
            data = msgpack.packb(head + [payload], use_bin_type=True)
        except (TypeError, ValueError, OverflowError):
            data = msgpack.packb(head + [None], use_bin_type=True)
        self._send(data)

    def gone(self, realm: str, uri: str, ids: list) -> None:
        self._send(msgpack.packb([WIRE_VERSION, self.node, "gone", realm, uri, list(ids)]))

    def took(self, realm: str, uri: str) -> None:
        self._send(msgpack.packb([WIRE_VERSION, self.node, "take", realm, uri]))

    def _send(self, data: bytes) -> None:
        if not self.cluster.connected:
            self.unsent += 1
            return
        self.sent += 1
        self.cluster.bridge.publish(self.subject, data, during_outage=False)

    # --------------------------------------------------- from the other nodes

    def _heard(self, data: bytes) -> None:
        notice = msgpack.unpackb(data, raw=False)
        node, kind, realm, uri = notice[1:5]
        shared = self.realms.get(realm)
        if node == self.node or shared is None or not isinstance(uri, str):
            return
        if kind == "put":
            message_id, timestamp, size, sender, attempts, payload = notice[5:11]
            args, kwargs = payload if payload is not None else (None, None)
            shared.heard_put(MailboxMessage(realm, uri, message_id, timestamp, args, kwargs, size, attempts,
                                            sender), payload is not None)
        elif kind == "gone":
            shared.heard_gone(uri, [i for i in notice[5] if isinstance(i, int)])
        elif kind == "take":
            shared.heard_take(uri)

    def _state(self, state: str, text: str) -> None:
        if state in ("connected", "reconnected"):
            for shared in list(self.realms.values()):
                shared.resync()
