"""``POST /mailbox/{name}``: senders that speak only HTTP put a message in a mailbox.

The body is kept opaque, with its Content-Type: the message is stored as
``args=[body]``, ``kwargs={"content_type": ...}``.  202 ``{"id": ...}`` is
answered only once the message is durable.  The realm is ``?realm=``, or the
one realm with mailboxes.  The credential (mailboxes with ``http =
"token"``) is the mailbox's token, as ``Authorization: Bearer <token>``,
``?token=<token>`` or a last path segment, ``POST /mailbox/{name}/{token}``;
that form needs no realm (the token names it) and no query string, so it is
the URL ``relayrouter.mailbox.endpoint`` hands out.  The access log shows
neither query strings nor that segment.

Refusals, JSON ``{"error": ..., "message": ...}``: 400 (realm ambiguous),
401 (no credential), 403 (wrong credential, or HTTP posts off), 404 (no such
realm or no mailbox rule names it), 405 with ``Allow: POST`` (the site's, see
transport/http.py), 413 (larger than ``max_message_bytes``), 429 (this client
address's share of the mailbox is used up: ``max_messages_per_sender`` /
``max_bytes_per_sender``), 507 (full, with ``overflow = "refuse"``), 503 (the
store failed).
"""

import hmac
import json

from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource

from ..core import mailbox as mb
from ..core.records import StoreError
from . import http_doc

log = Logger(namespace="relayrouter.http")


class MailboxResource(Resource):
    isLeaf = True
    openapi = http_doc.MAILBOX

    def __init__(self, mailboxes_by_realm: dict) -> None:
        super().__init__()
        self.mailboxes_by_realm = mailboxes_by_realm  # realm name -> core.mailbox.Mailboxes

    def render_POST(self, request):  # noqa: N802 - twisted.web's name
        try:
            if len(request.postpath) == 2:
                mailboxes, name = self._target_by_token(request)
            else:
                mailboxes, name = self._target(request)
                rule = mailboxes.match(name)[0]
                self._check_credential(request, mailboxes, rule, name)
            body = request.content.read() if request.content is not None else b""
        except _Refusal as refusal:
            return _json(request, refusal.code, {"error": refusal.error, "message": str(refusal)})
        content_type = (request.getHeader(b"content-type") or b"application/octet-stream").decode("latin-1")
        finished = []
        request.notifyFinish().addBoth(finished.append)

        def done(outcome) -> None:
            if finished:
                return  # the client went away; the message is stored all the same
            if isinstance(outcome, StoreError):
                _finish(request, 503, {"error": mb.STORE_FAILED,
                                       "message": "the router could not store the message; see its log"})
            else:
                _finish(request, 202, {"id": outcome, "mailbox": name})

        refusal = mailboxes.put(name, [body], {"content_type": content_type}, len(body), done, _sender(request))
        if refusal is not None:
            uri = mailboxes.refusal_uri(refusal)
            code = {mb.TOO_LARGE: 413, mb.MAILBOX_FULL: 507, mb.SENDER_QUOTA: 429}.get(uri, 404)
            log.info("POST /mailbox refused ({code}): {text}", code=code, text=refusal)
            return _json(request, code, {"error": uri, "message": refusal})
        return server.NOT_DONE_YET

    def _target(self, request) -> tuple:
        parts = request.postpath
        name = parts[0].decode("utf8", "replace") if len(parts) == 1 and parts[0] else None
        if name is None:
            raise _Refusal(404, mb.NO_SUCH_MAILBOX, "POST /mailbox/<mailbox URI>, e.g. /mailbox/mailbox.agent-b")
        realm = _query(request, b"realm")
        if realm is None:
            if len(self.mailboxes_by_realm) != 1:
                raise _Refusal(400, "wamp.error.invalid_argument",
                               "several realms have mailboxes: say which with ?realm=")
            realm = next(iter(self.mailboxes_by_realm))
        mailboxes = self.mailboxes_by_realm.get(realm)
        if mailboxes is None:
            raise _Refusal(404, "wamp.error.no_such_realm", f"realm '{realm}' has no mailboxes")
        if mailboxes.match(name) is None:
            raise _Refusal(404, mb.NO_SUCH_MAILBOX, f"'{name}' is not a mailbox of realm '{realm}'")
        return mailboxes, name

    def _target_by_token(self, request) -> tuple:
        """``/mailbox/{name}/{token}``: the realm is the one whose token for ``name`` this is."""
        name = request.postpath[0].decode("utf8", "replace")
        given = request.postpath[1].decode("utf8", "replace").encode("utf8")
        wanted = _query(request, b"realm")
        candidates = [(realm, mailboxes) for realm, mailboxes in sorted(self.mailboxes_by_realm.items())
                      if (wanted is None or realm == wanted) and mailboxes.match(name) is not None]
        if not candidates:
            raise _Refusal(404, mb.NO_SUCH_MAILBOX, f"'{name}' is not a mailbox here")
        found = None
        for realm, mailboxes in candidates:  # every candidate compared, in constant time each
            rule = mailboxes.match(name)[0]
            token = rule.token(realm, name) if rule.http == "token" else None
            if token is not None and hmac.compare_digest(given, token.encode()) and found is None:
                found = (mailboxes, name)
        if found is None:
            raise _Refusal(403, "wamp.error.not_authorized", f"wrong token for mailbox '{name}'")
        return found

    def _check_credential(self, request, mailboxes, rule, name: str) -> None:
        if rule.http == "off":
            raise _Refusal(403, "wamp.error.not_authorized", f"mailbox '{name}' takes no HTTP posts")
        if rule.http == "open":
            return
        given = _bearer(request) or _query(request, b"token")
        if not given:
            raise _Refusal(401, "wamp.error.not_authorized",
                           "give the mailbox's token: Authorization: Bearer <token> or ?token=")
        expected = rule.token(mailboxes.realm.name, name)
        if not hmac.compare_digest(given.encode("utf8", "replace"), expected.encode()):
            raise _Refusal(403, "wamp.error.not_authorized", f"wrong token for mailbox '{name}'")

    def body_limit(self, segments: list, query: dict) -> tuple | None:
        """The largest body a POST here may have (the site refuses a larger
        one before reading it: transport/http.py): the mailbox's
        ``max_message_bytes``, or the largest of the rules that could apply."""
        name = segments[0].decode("utf8", "replace") if segments and segments[0] else None
        realm = (query.get(b"realm") or [b""])[0].decode("utf8", "replace")
        candidates = [mbs for r, mbs in self.mailboxes_by_realm.items() if not realm or r == realm]
        found = [mbs.match(name)[0] for mbs in candidates if name and mbs.match(name) is not None]
        if found:
            what = f"max_message_bytes of mailbox '{name}'"
        else:  # not a mailbox: refused with 404 once read, but never read past every bound
            found = [rule for mbs in candidates for rule in mbs.rules]
            what = "the largest max_message_bytes here"
        limit = max((rule.max_message_bytes for rule in found), default=mb.DEFAULT_MAX_MESSAGE_BYTES)
        return limit, what, mb.TOO_LARGE


class _Refusal(Exception):
    def __init__(self, code: int, error: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.error = error


def _sender(request) -> str:
    """HTTP senders' shares are per client address (they all hold the same token)."""
    address = request.getClientAddress()
    return f"http:{getattr(address, 'host', None) or 'unix'}"


def _bearer(request) -> str | None:
    header = request.getHeader(b"authorization")
    if header and header[:7].lower() == b"bearer ":
        return header[7:].strip().decode("latin-1")
    return None


def _query(request, name: bytes) -> str | None:
    values = request.args.get(name)
    return values[0].decode("utf8", "replace") if values else None


def _json(request, code: int, body: dict) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body).encode()


def _finish(request, code: int, body: dict) -> None:
    request.write(_json(request, code, body))
    request.finish()
