from twisted.application.service import ServiceMaker

mediator_proxy = ServiceMaker(
    "mediator-proxy",
    "connectors.mediator_proxy.tap",
    "Deliver a relayrouter mailbox to a local agent that cannot poll (and send its messages out).",
    "mediator-proxy",
)
