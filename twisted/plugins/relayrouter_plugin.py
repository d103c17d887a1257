from twisted.application.service import ServiceMaker

relayrouter = ServiceMaker(
    "relayrouter",
    "relayrouter.tap",
    "A WAMP v2 router (WebSocket and RawSocket; JSON, MessagePack, CBOR).",
    "relayrouter",
)
