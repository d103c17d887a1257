from twisted.application.service import ServiceMaker

pairing_agent = ServiceMaker(
    "pairing-agent",
    "connectors.pairing.tap",
    "Join a pair's peer (gateway or manager) to its other peer's REST API through the router.",
    "pairing-agent",
)
