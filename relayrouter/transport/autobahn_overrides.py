"""Everything relayrouter does to Autobahn and Twisted beyond their public API.

Every private name we read, every method we override whose body leans on
Autobahn's internals, and the one process-wide patch are here or listed in
:data:`OVERRIDES`, each with why.  They were checked against
:data:`CHECKED_AGAINST`; setup.cfg bounds Autobahn to that release series.
``tests/transport/test_autobahn_overrides.py`` fails, naming the override,
when a name we rely on is gone, and :func:`verify` stops the router at start
for the same reason, so a new Autobahn breaks loudly, never quietly.

To move to a new Autobahn: run that test against it, read the diff of every
owner listed below, update :data:`CHECKED_AGAINST` and the bound in setup.cfg.

The overrides
-------------
1. The XOR masker (process-wide): ``autobahn.websocket.protocol`` looks
   ``create_xor_masker`` up by name for every frame it unmasks; we replace it
   with one that is faster on small payloads (masking.py), only if Autobahn's
   own is still there (:func:`install_masker`).
2. Private attributes read or replaced on a connection: the negotiated
   ``_serializer`` (and the object serializer inside it, ``_serializer`` too,
   shared by the connections of a listener), ``_transport_details.peer``, and
   ``_session``, which Autobahn's ``isOpen()`` checks and which we set to our
   Connection since we never let Autobahn create a session (accessors below).
3. Twisted: ``_channel``, the HTTP channel twisted.web wraps in the protocol
   it hands the listening port (:func:`transport_of`); ``buildProtocol``
   replaced on a listening factory instance to keep every protocol it built
   (:func:`track_built_protocols`).
4. The WebSocket send path (:class:`WebSocketProtocolOverrides`): a server
   frame written by hand when Autobahn's sender is idle, plus the receive
   side trimmed of Autobahn's per-message logging and observer signals.
5. The WebSocket factory (:class:`WebSocketFactoryOverrides`): protocol
   options as class attributes of a per-factory protocol subclass, and
   ``allowNullOrigin`` kept on across ``setProtocolOptions`` calls.
6. RawSocket (transport/rawsocket.py): our own framing on top of Autobahn's
   handshake, reading ``_handshake_complete``, ``_max_len_send`` and
   ``MAX_LENGTH`` and overriding ``_on_handshake_complete``.
7. The relay's raw WebSocket streams (relay/raw.py) write pre-built frames the
   same way as 4 (the same ``state``/``send_state``/``send_queue`` checks),
   close with ``sendCloseFrame`` and read ``_transport_details``.
"""

import importlib
import inspect
import struct
from dataclasses import dataclass

import autobahn
from autobahn.websocket import protocol as _ws_protocol
from autobahn.websocket import xormasker as _xormasker
from autobahn.websocket.protocol import WebSocketProtocol

from . import masking

CHECKED_AGAINST = {"autobahn": "26.10.2", "twisted": "26.10.0"}


@dataclass(frozen=True, slots=True)
class Override:
    owner: str  # a module, or module:Class
    names: tuple[str, ...]  # what we rely on there; "method(param)": a parameter of it
    what: str  # "patched", "read", "replaced", "overridden"
    why: str
    on_instances: bool = False  # set by the owner's __init__/connection code, not on the class


OVERRIDES: tuple[Override, ...] = (
    Override("autobahn.websocket.protocol", ("create_xor_masker",), "patched",
             "looked up per received frame; ours is ~4x faster below 1 KiB (masking.py)"),
    Override("autobahn.websocket.xormasker", ("create_xor_masker",), "read",
             "the original, kept for large payloads and to tell whether it is still installed"),
    Override("autobahn.twisted.websocket:WampWebSocketServerProtocol",
             ("_serializer", "_transport_details", "_session"), "read",
             "the negotiated serializer, the peer address, and the handler isOpen() checks",
             on_instances=True),
    Override("autobahn.twisted.rawsocket:WampRawSocketServerProtocol",
             ("_serializer", "_transport_details", "_session", "_handshake_complete", "_max_len_send"),
             "read", "as for WebSocket, plus the handshake state and the peer's length limit",
             on_instances=True),
    Override("autobahn.twisted.rawsocket:WampRawSocketServerProtocol",
             ("_on_handshake_complete", "MAX_LENGTH", "lengthLimitExceeded", "sendString", "isOpen"),
             "overridden", "we open our Connection instead of an Autobahn session; our framing"),
    Override("autobahn.wamp.serializer:Serializer", ("_serializer", "SERIALIZER_ID"), "read",
             "the object serializer Message.serialize caches bytes under", on_instances=True),
    Override("autobahn.wamp.message:Message", ("_serialized",), "read",
             "the bytes Message.serialize cached per object serializer: read first, without a method "
             "call, for every receiver of an EVENT after the first (cached_bytes, inlined in "
             "Connection.send)", on_instances=True),
    Override("autobahn.websocket.protocol:WebSocketServerProtocol", ("trafficStats",), "read",
             "Autobahn's tally of message bytes read (incomingOctetsAppLevel): a connection's bytes "
             "received, read when asked instead of counted again per message", on_instances=True),
    Override("autobahn.websocket.protocol:WebSocketProtocol",
             ("STATE_OPEN", "SEND_STATE_GROUND", "_dataReceived", "_connectionMade", "sendMessage",
              "onMessageEnd", "dropConnection", "sendClose", "CLOSE_STATUS_CODE_NORMAL"),
             "overridden", "our send path and trimmed receive path (WebSocketProtocolOverrides)"),
    Override("autobahn.websocket.protocol:WebSocketServerProtocol",
             ("state", "send_state", "send_queue", "_perMessageCompress", "failedByMe", "message_data",
              "message_is_binary", "http_request_data", "http_headers", "http_request_params"),
             "read", "what the send path checks before framing by hand, and what we trim",
             on_instances=True),
    Override("autobahn.websocket.protocol:WebSocketServerFactory",
             ("setProtocolOptions(allowNullOrigin)",), "overridden",
             "setProtocolOptions resets allowNullOrigin unless passed; our origin policy decides"),
    Override("autobahn.websocket.protocol:WebSocketServerProtocol", ("CONFIG_ATTRS",), "read",
             "the options Autobahn copies onto every connection, made class attributes instead"),
    Override("autobahn.websocket.protocol:WebSocketProtocol", ("onCloseHandshakeTimeout", "STATE_CLOSED"),
             "overridden", "a peer that does not answer our Close in time is hung up with a FIN, not a "
             "reset that would throw away the ABORT or GOODBYE it has not read yet"),
    Override("autobahn.websocket.protocol:WebSocketProtocol",
             ("closeHandshakeTimeout", "closeHandshakeTimeoutCall", "wasClean", "wasNotCleanReason",
              "wasCloseHandshakeTimeout"), "read", "what Autobahn's own timeout handler sets", on_instances=True),
    Override("autobahn.websocket.protocol:WebSocketProtocol", ("sendCloseFrame",), "read",
             "the relay's raw streams close with any status code (sendClose refuses 1001 and 1008)"),
    Override("twisted.web.http:_GenericHTTPChannelProtocol", ("_channel",), "read",
             "the HTTP channel whose transport a not-yet-upgraded connection has", on_instances=True),
    Override("twisted.internet.protocol:Factory", ("buildProtocol",), "replaced",
             "on one listening factory instance, to keep what it built (shutdown closes those)"),
)


def _owner(path: str):
    module, _, cls = path.partition(":")
    owner = importlib.import_module(module)
    return getattr(owner, cls) if cls else owner


def missing() -> list[str]:
    """Module- and class-level names in OVERRIDES that the installed packages lack."""
    gone = []
    for override in OVERRIDES:
        if override.on_instances:
            continue
        try:
            owner = _owner(override.owner)
        except (ImportError, AttributeError):
            gone.append(f"{override.owner} (the module or class itself)")
            continue
        gone.extend(f"{override.owner}.{name}" for name in override.names if not _has(owner, name))
    return gone


def _has(owner, name: str) -> bool:
    attribute, _, parameter = name.partition("(")
    if not hasattr(owner, attribute):
        return False
    if not parameter:
        return True
    try:
        return parameter.rstrip(")") in inspect.signature(getattr(owner, attribute)).parameters
    except (TypeError, ValueError):
        return False


def missing_on(protocol, kind: str) -> list[str]:
    """Instance names of OVERRIDES an open ``kind`` ("websocket"/"rawsocket") protocol lacks."""
    owners = {"websocket": ("WampWebSocketServerProtocol", "WebSocketServerProtocol"),
              "rawsocket": ("WampRawSocketServerProtocol",)}[kind]
    names = [n for o in OVERRIDES if o.on_instances and o.owner.endswith(owners) for n in o.names]
    return [name for name in names if not hasattr(protocol, name)]


def verify() -> None:
    """Refuse to run on an Autobahn/Twisted that lacks a name we rely on."""
    gone = missing()
    if gone:
        raise RuntimeError(
            f"relayrouter was checked against Autobahn {CHECKED_AGAINST['autobahn']} and relies on "
            f"names this Autobahn {autobahn.__version__} (or Twisted) lacks: {', '.join(gone)}; "
            "see relayrouter/transport/autobahn_overrides.py")


# ------------------------------------------------------------ 1. the masker


def install_masker() -> bool:
    """Put our masker in Autobahn's place if Autobahn's own is still there.

    True when ours is installed (now or before); False when something else
    replaced Autobahn's, which we then leave alone."""
    current = _ws_protocol.create_xor_masker
    if current is masking.create_xor_masker:
        return True
    if current is not _xormasker.create_xor_masker:
        return False
    _ws_protocol.create_xor_masker = masking.create_xor_masker
    return True


# ------------------------------------------- 2. private connection attributes


def wamp_serializer(protocol):
    """The Autobahn Serializer the opening handshake negotiated."""
    return protocol._serializer


def object_serializer(serializer):
    """The object serializer inside an Autobahn Serializer: shared by every
    connection of a listener, so Message.serialize makes bytes once per message."""
    return serializer._serializer


def peer_of(protocol) -> str:
    return protocol._transport_details.peer or ""


def cached_bytes(message, object_serializer) -> bytes | None:
    """The bytes ``message.serialize(object_serializer)`` made already, or None."""
    return message._serialized.get(object_serializer)


def attach_handler(protocol, handler) -> None:
    """Autobahn's isOpen() is ``_session is not None``; ours is the Connection."""
    protocol._session = handler


def detach_handler(protocol) -> None:
    protocol._session = None


# --------------------------------------------------------------- 3. Twisted


def transport_of(protocol):
    """The TCP transport of what a listening port built: twisted.web wraps its
    HTTP channel (``_channel``); an upgraded channel has no transport left."""
    channel = getattr(protocol, "_channel", protocol)
    return getattr(channel, "transport", None)


def track_built_protocols(factory, track) -> None:
    """Call ``track(protocol)`` for every protocol ``factory`` builds, by
    replacing ``buildProtocol`` on this one instance (it may be a twisted.web
    Site or a TLS wrapper, not a class of ours)."""
    build = factory.buildProtocol

    def build_and_track(addr):
        protocol = build(addr)
        if protocol is not None:
            track(protocol)
        return protocol

    factory.buildProtocol = build_and_track


# ------------------------------------------------ 4. the WebSocket protocol

_OPEN = WebSocketProtocol.STATE_OPEN
_GROUND = WebSocketProtocol.SEND_STATE_GROUND
_HEADER16 = struct.Struct("!BBH").pack
_HEADER64 = struct.Struct("!BBQ").pack


class _SendQueue(list):
    """The part of collections.deque Autobahn's send path uses."""

    __slots__ = ()

    def popleft(self):
        return self.pop(0)


class WebSocketProtocolOverrides:
    """Mixed in before Autobahn's WebSocket server protocol."""

    # Autobahn's WAMP mixin reads these on the handler in its logging paths.
    _authid = None
    _session_id = None
    _binary = False  # set at open: the serializer's BINARY

    def _connectionMade(self) -> None:
        super()._connectionMade()
        # Autobahn gives each connection a deque (~600 bytes) for sends it
        # must pace; a list does for the rare times it is used.
        self.send_queue = _SendQueue()

    # Autobahn's versions of these two evaluate debug-log arguments and fire
    # observer signals for every message; we need neither.
    def dataReceived(self, data: bytes) -> None:
        self._dataReceived(data)

    def onMessageEnd(self) -> None:
        if not self.failedByMe:
            self.onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def payload_bytes_received(self) -> int:
        """Bytes of messages read since the connection opened (uncompressed),
        as Autobahn tallies them for every data frame anyway."""
        return self.trafficStats.incomingOctetsAppLevel

    def _write_wamp(self, data: bytes) -> None:
        """Send one WAMP message: a server's frame is a 2-10 byte header and the
        unmasked payload, written at once when no compression was negotiated
        and Autobahn's sender is idle; anything else goes through sendMessage."""
        if (self.state != _OPEN or self._perMessageCompress is not None
                or self.send_state != _GROUND or self.send_queue):
            if self.state == _OPEN:
                self.sendMessage(data, self._binary)
            return
        size = len(data)
        first = 0x82 if self._binary else 0x81  # FIN + binary/text opcode
        if size < 126:
            header = bytes((first, size))
        elif size < 65536:
            header = _HEADER16(first, 126, size)
        else:
            header = _HEADER64(first, 127, size)
        if size < 16384:
            self.transport.write(header + data)
        else:
            self.transport.writeSequence((header, data))

    def onCloseHandshakeTimeout(self) -> None:
        """We closed (after an ABORT or a GOODBYE) and the peer did not answer our Close in
        time. Autobahn then resets the TCP connection, and a reset makes the peer's system
        throw away what it received and had not read yet: a slow peer (a loaded device, a
        busy client) never reads the ABORT or GOODBYE that says why it was closed. Hung up
        with a FIN instead, everything sent stays readable; a peer that reads nothing at all
        is reset after as long again."""
        self.closeHandshakeTimeoutCall = None
        if self.state == WebSocketProtocol.STATE_CLOSED:
            return
        self.wasClean = False
        self.wasNotCleanReason = "WebSocket closing handshake timeout (peer did not finish the closing handshake in time)"
        self.wasCloseHandshakeTimeout = True
        self.dropConnection(abort=False)
        self.factory.clock.callLater(self.closeHandshakeTimeout, _reset_if_still_open, self.transport)


def _reset_if_still_open(transport) -> None:
    if getattr(transport, "connected", False) and hasattr(transport, "abortConnection"):
        transport.abortConnection()


# ------------------------------------------------- 5. the WebSocket factory


class WebSocketFactoryOverrides:
    """Mixed in before Autobahn's WebSocket server factory; ``protocol_base``
    is the protocol class whose per-factory subclass carries the options."""

    protocol_base: type

    def setProtocolOptions(self, **options) -> None:
        # Autobahn's setProtocolOptions resets allowNullOrigin to False on every
        # call unless it is passed, and then refuses `Origin: null` (a page
        # opened from a file) with 400 before we are asked.  Autobahn admits
        # every origin here; the listener's OriginPolicy decides in onConnect.
        options.setdefault("allowNullOrigin", True)
        super().setProtocolOptions(**options)
        self._options_as_class_attributes()

    def _options_as_class_attributes(self) -> None:
        """Autobahn copies each of ~40 options from the factory onto every new
        connection unless the protocol class already has it; giving the
        factory its own protocol subclass holding the current values keeps a
        few kilobytes per connection out of the instance dicts."""
        base = self.protocol_base
        options = {name: _as_class_attribute(getattr(self, name))
                   for name in base.CONFIG_ATTRS if hasattr(self, name)}
        self.protocol = type(base.__name__, (base,), options)


def _as_class_attribute(value):
    # A function stored on a class would become a method (e.g. the
    # permessage-deflate accept callback); keep it a plain callable.
    return staticmethod(value) if callable(value) else value
