"""Outbound: what the agent posts for other mailboxes, spooled, then put.

Spooled on disk first (the agent gets 202), then published with
``acknowledge`` in spool order while the router is up, and removed from the
spool only once PUBLISHED. A put the router refuses for good becomes an
outbound dead letter.
"""

import time

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer, task
from twisted.logger import Logger

from ..common import Backoff, HttpError
from . import delivery
from .delivery import REFUSED
from .troubles import describe_error, trouble


class Outbound:
    """The agent's messages for other mailboxes: spooled on disk, then put in spool order."""

    log = Logger()

    def __init__(self, proxy) -> None:  # a MediatorProxy
        self.proxy = proxy
        self.reactor = proxy.reactor
        self.spool = proxy.store.spool("outbound")
        self.dead = proxy.store.spool("outbound-dead-letters")
        self._sending_for = None  # the session whose send loop runs
        self._writing = 0
        self._logged = None  # the kind of transient trouble last logged
        self.sent = 0
        self.last_error: dict | None = None
        self._sleep: defer.Deferred | None = None
        self._stopped = False

    def held(self) -> int:
        """Messages in the spool, counting those being written."""
        return len(self.spool) + self._writing

    def accept(self, mailbox: str, body: bytes, content_type: str) -> defer.Deferred:
        self._writing += 1
        d = self.spool.append(body, {"mailbox": mailbox, "content_type": content_type})
        d.addBoth(self._spooled)
        return d

    def _spooled(self, seq):
        self._writing -= 1
        self.kick()
        return seq

    def stop(self) -> None:
        self._stopped = True
        if self._sleep is not None:
            self._sleep.cancel()

    def kick(self, session=None) -> None:
        session = session or self.proxy.router.session
        if self._stopped or len(self.spool) == 0 or session is None or not session.is_attached():
            return
        if self._sending_for is not session:
            self._send_all(session)

    @defer.inlineCallbacks
    def _send_all(self, session):
        self._sending_for = session
        backoff = Backoff(0.5, 30.0)
        try:
            while not self._stopped and session.is_attached():
                items = yield self.spool.first(100)
                if not items:
                    break
                for item in items:
                    done = yield self._send(session, item, backoff)
                    if not done:
                        return
        except defer.CancelledError:
            pass
        except Exception:
            self.log.failure("sending the outbound spool failed unexpectedly")
        finally:
            if self._sending_for is session:
                self._sending_for = None
        if session.is_attached():
            self.kick(session)  # what was spooled meanwhile; after a new join, that join kicks

    @defer.inlineCallbacks
    def _send(self, session, item, backoff):
        """True once the item left the spool (put, or dead-lettered); False if the session is gone."""
        mailbox, content_type = item.meta["mailbox"], item.meta["content_type"]
        while not self._stopped and session.is_attached():
            try:
                yield session.publish(mailbox, item.body, content_type=content_type,
                                      options=PublishOptions(acknowledge=True))
            except Exception as e:
                error_uri = e.error if isinstance(e, ApplicationError) else None
                message = f"putting outbound message {item.seq} into {mailbox} failed: {describe_error(e)}"
                self.last_error = trouble("outbound", message)
                if delivery.put_verdict(error_uri) == REFUSED:
                    yield self.dead.append(item.body, dict(item.meta, reason=describe_error(e), dead_at=time.time()))
                    yield self.spool.remove(item.seq)
                    self.log.error("{message}; kept as an outbound dead letter", message=message)
                    return True
                if session.is_attached() and self._logged != (error_uri or type(e).__name__):
                    self._logged = error_uri or type(e).__name__  # once per kind of trouble
                    self.log.warn("{message}; retrying with backoff (logged again only if this changes)",
                                  message=message)
                self._sleep = task.deferLater(self.reactor, backoff.next(), lambda: None)
                try:
                    yield self._sleep
                finally:
                    self._sleep = None
                continue
            yield self.spool.remove(item.seq)
            self.sent += 1
            self._logged = None
            backoff.reset()
            return True
        return False

    def describe(self) -> dict:
        return {"spooled": len(self.spool), "sent": self.sent, "dead_letters": len(self.dead),
                "last_error": self.last_error}

    @defer.inlineCallbacks
    def retry_dead(self, seq: int):
        """Back into the outbound spool (at its end), to be put again."""
        item = yield self.dead.get(seq)
        if item is None:
            raise HttpError(404, f"no outbound dead letter {seq}")
        spooled = yield self.accept(item.meta["mailbox"], item.body, item.meta["content_type"])
        yield self.dead.remove(seq)
        return 202, {"spooled": spooled, "mailbox": item.meta["mailbox"]}

    @defer.inlineCallbacks
    def forget_dead(self, seq: int):
        if not (yield self.dead.remove(seq)):
            raise HttpError(404, f"no outbound dead letter {seq}")
        return {"removed": seq}
