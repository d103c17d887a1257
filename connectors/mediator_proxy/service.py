"""The mediator-proxy service: router side, agent side, local HTTP.

``MediatorProxy`` (a MultiService) holds the :class:`RouterConnection`, the
local :class:`HttpService` and the state store, and wires two workers:

* :class:`Inbound` takes the mailbox (one long ``relayrouter.mailbox.take``
  per session, progressive results) and delivers it to the agent one message
  at a time, as :mod:`.delivery` decides; it acknowledges only after the
  agent answered 2xx and the next POST waits for the router's RESULT of that
  ack, so a crash repeats at most the one message in delivery.
* :class:`Outbound` sends what the agent posted to ``/outbound/<mailbox>``:
  spooled on disk first (202), then published with ``acknowledge`` in spool
  order while the router is up, removed from the spool once PUBLISHED.

Both keep what they cannot deliver as dead letters in the state store, never
drop it.
"""

from dataclasses import dataclass, field

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from relayrouter.api import openapi

from ..common import ApiToken, HttpService, JsonRoot, RouterConnection, RouterSettings, StateStore, TokenGuard
from . import http_doc
from .inbound import Inbound
from .outbound import Outbound
from .resources import DeadLettersPage, EndpointPage, OutboundPage, StatusPage
from .troubles import describe_error

STATS = "relayrouter.mailbox.stats"


@dataclass(frozen=True)
class ProxyConfig:
    router: RouterSettings
    agent_endpoint: str
    state_dir: str
    listen: str = "tcp:8081:interface=127.0.0.1"
    mailbox: str = "mailbox.{authid}"
    public_url: str | None = None
    max_attempts: int = 5
    max_inflight: int = 32
    agent_timeout: float = 30.0
    agent_retry_initial: float = 0.5
    agent_retry_max: float = 30.0
    max_outbound_bytes: int = 1048576
    max_outbound_messages: int = 100000
    api_token: ApiToken | None = field(default=None, repr=False)  # required by MediatorProxy


class MediatorProxy(service.MultiService):
    log = Logger()

    def __init__(self, config: ProxyConfig, remembered: dict | None = None, reactor=None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        if config.api_token is None:
            raise ValueError("the local API needs a token (ProxyConfig.api_token)")
        self.config = config
        self.reactor = reactor
        self.remembered = remembered or {}
        self.store = StateStore(config.state_dir, reactor)
        self.router = RouterConnection(config.router, on_join=self._joined, on_leave=self._left, reactor=reactor)
        self.router.setServiceParent(self)
        self.inbound = Inbound(self)
        self.outbound = Outbound(self)
        self.http = HttpService(config.listen, self._resources(), name="mediator-proxy", reactor=reactor)
        self.http.setServiceParent(self)
        self.mailbox: str | None = None

    def _resources(self):
        return TokenGuard(local_api(self), self.config.api_token, "mediator-proxy")

    def startService(self) -> None:
        if self.remembered:
            self.store.put("options", self.remembered)
        c = self.config
        self.log.info("mediator-proxy: router {router} realm {realm} ({method}{authid}), mailbox {mailbox},"
                      " agent {agent}, state {state}; the local API's token is in {token}",
                      router=c.router.url, realm=c.router.realm, method=c.router.credentials.method,
                      authid=f" as {c.router.credentials.authid}" if c.router.credentials.authid else "",
                      mailbox=c.mailbox, agent=c.agent_endpoint, state=self.store.path,
                      token=c.api_token.source)
        self.inbound.load()
        super().startService()

    @defer.inlineCallbacks
    def stopService(self):
        self.inbound.stop()
        self.outbound.stop()
        yield super().stopService()
        yield self.inbound.close()
        self.store.close()

    # --------------------------------------------------------- router side

    @defer.inlineCallbacks
    def _joined(self, session, details):
        self.mailbox = self.config.mailbox.replace("{authid}", details.authid or "")
        yield self.inbound.loaded
        self.inbound.start(session, self.mailbox)
        self.outbound.kick(session)

    def _left(self, reason: str) -> None:
        self.inbound.session_ended()

    # ------------------------------------------------------------- status

    def status(self) -> str:
        if self.router.status == "ready" and self.inbound.taking:
            return "ready"
        return "init" if self.router.status == "init" else "connecting"

    def public_endpoint(self) -> dict | None:
        known = self.store.get("endpoint")
        if not known:
            return None
        base = (self.config.public_url or "").rstrip("/")
        url = base + known["path"] if base else (known.get("url") or self.config.router.http_base + known["path"])
        return {"endpoint": url, "mailbox": known.get("mailbox"), "realm": known.get("realm")}

    @defer.inlineCallbacks
    def describe(self):
        stats = yield self._stats()  # first: what follows is one snapshot, taken after it
        errors = [e for e in (self.router.last_error, self.inbound.last_error, self.outbound.last_error) if e]
        mailbox = {"uri": self.mailbox or self.config.mailbox, "taking": self.inbound.taking,
                   "pending": len(self.inbound.queue), "in_delivery": self.inbound.in_delivery}
        if stats is not None:
            mailbox["router"] = stats
        return {
            "status": self.status(),
            "router": self.router.describe(),
            "mailbox": mailbox,
            "agent": self.inbound.describe(),
            "outbound": self.outbound.describe(),
            "dead_letters": self.inbound.describe_dead(),
            "last_error": max(errors, key=lambda e: e["at"]) if errors else None,
        }

    @defer.inlineCallbacks
    def _stats(self):
        session = self.router.session
        if self.router.status != "ready" or session is None or self.mailbox is None:
            return None
        try:
            d = session.call(STATS, self.mailbox)
            d.addTimeout(2, self.reactor)
            stats = yield d
        except Exception as e:
            return {"error": describe_error(e)}
        return stats


def local_api(proxy) -> JsonRoot:
    """The local API's tree (behind the token: see ``_resources``)."""
    root = JsonRoot()
    root.putChild(b"status", StatusPage(proxy))
    root.putChild(b"endpoint", EndpointPage(proxy))
    root.putChild(b"outbound", OutboundPage(proxy))
    root.putChild(b"dead-letters", DeadLettersPage(proxy))
    # Behind the token like every path: without it, not even which paths exist is told.
    openapi.mount(root, http_doc.TITLE, http_doc.DESCRIPTION, http_doc.SECURITY_SCHEMES, guarded_by="apiToken")
    return root


def reference_document() -> dict:
    """The OpenAPI document every mediator proxy (mailbox mode) serves (its reference page)."""
    return local_api(None).children[b"openapi.json"].document()
