"""A Micronets test client, written from the protocol that the Micronets
websocket proxy's ``bin/websocket-test-client.py`` documents (not from its code):

* open ``wss://…/micronets/v1/ws-proxy/<meetup-id>`` with a client certificate
  loaded from one key+certificate PEM file, the server checked against a root
  certificate but not against its host name;
* send ``CONN:HELLO`` (``messageId`` 0, ``requiresResponse`` false, a
  ``peerClass`` and ``peerId``), then wait for the peer's ``CONN:HELLO``;
* serve HTTP on a local port: every request becomes a ``REST:REQUEST``
  (``method``, ``path``, ``headers`` as ``[{name, value}]``, the body as
  ``messageBody`` with its ``dataFormat``: JSON parsed, anything else text),
  and the ``REST:RESPONSE`` whose ``inResponseTo`` names it becomes the answer.

It prints ``HELLO handshake complete`` and ``HTTP proxy on <port>`` when ready.
"""

import argparse
import asyncio
import concurrent.futures
import itertools
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

ENVELOPE = (("messageId", int), ("messageType", str), ("requiresResponse", bool))


def check(message: dict) -> dict:
    body = message.get("message") if isinstance(message, dict) else None
    if not isinstance(body, dict):
        raise ValueError("no 'message' object")
    for name, kind in ENVELOPE:
        if not isinstance(body.get(name), kind):
            raise ValueError(f"'{name}' is not a {kind.__name__}")
    return body


class Peer(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.opened.set_result(self)

    def onMessage(self, payload, is_binary):
        self.factory.inbox.put_nowait(json.loads(payload))

    def onClose(self, was_clean, code, reason):
        print(f"closed {code} {reason}", flush=True)
        self.factory.inbox.put_nowait(None)


class Client:
    def __init__(self, loop, protocol) -> None:
        self.loop = loop
        self.protocol = protocol
        self.ids = itertools.count(1)
        self.pending: dict[int, concurrent.futures.Future] = {}

    def send(self, message: dict) -> None:
        data = json.dumps({"message": message}).encode()
        self.loop.call_soon_threadsafe(self.protocol.sendMessage, data, False)

    async def read(self, inbox) -> None:
        while (frame := await inbox.get()) is not None:
            body = check(frame)
            waiting = self.pending.pop(body.get("inResponseTo"), None)
            if waiting is not None:
                waiting.set_result(body)
        for waiting in self.pending.values():
            waiting.set_exception(ConnectionError("the websocket closed"))

    def request(self, method: str, path: str, headers, body: bytes) -> dict:
        message_id = next(self.ids)
        message = {"messageId": message_id, "messageType": "REST:REQUEST", "requiresResponse": True,
                   "method": method, "path": path}
        data_format = headers.get("Content-Type") or "application/json"
        if body:
            message["dataFormat"] = data_format
            message["messageBody"] = json.loads(body) if data_format == "application/json" else body.decode()
        kept = [{"name": k, "value": v} for k, v in headers.items()
                if k.lower() not in ("content-length", "content-type", "content-encoding")]
        if kept:
            message["headers"] = kept
        answer = self.pending[message_id] = concurrent.futures.Future()
        self.send(message)
        return answer.result(timeout=60)


def http_handler(client: Client):
    class Handler(BaseHTTPRequestHandler):
        def relay(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            response = client.request(self.command, self.path, self.headers, body)
            data = b""
            if "messageBody" in response:
                value = response["messageBody"]
                data = (json.dumps(value) if response.get("dataFormat") == "application/json" else value).encode()
            self.send_response(response["statusCode"])
            for header in response.get("headers") or ():
                self.send_header(header["name"], header["value"])
            if data:
                self.send_header("Content-Type", response.get("dataFormat") or "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = relay

        def log_message(self, *args):
            pass

    return Handler


async def main(args) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_cert_chain(args.client_cert)
    context.load_verify_locations(cafile=args.ca_cert)
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = False
    loop = asyncio.get_running_loop()
    factory = WebSocketClientFactory(args.connect_uri)
    factory.protocol = Peer
    factory.opened, factory.inbox = loop.create_future(), asyncio.Queue()
    url = urlsplit(args.connect_uri)
    await loop.create_connection(factory, url.hostname, url.port, ssl=context, server_hostname="")
    protocol = await factory.opened
    client = Client(loop, protocol)
    client.send({"messageId": 0, "messageType": "CONN:HELLO", "requiresResponse": False,
                 "peerClass": "micronets-ws-test-client", "peerId": "12345678"})
    hello = check(await factory.inbox.get())
    if hello["messageType"] != "CONN:HELLO":
        raise SystemExit(f"expected CONN:HELLO, got {hello['messageType']}")
    print(f"HELLO handshake complete: peer {hello.get('peerClass')} {hello.get('peerId')}", flush=True)
    httpd = ThreadingHTTPServer((args.http_proxy_address, args.http_proxy_port), http_handler(client))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(f"HTTP proxy on {httpd.server_address[1]}", flush=True)
    await client.read(factory.inbox)
    httpd.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-proxy-address", default="localhost")
    parser.add_argument("--http-proxy-port", type=int, default=5001)
    parser.add_argument("--client-cert", required=True, help="key and certificate in one PEM file")
    parser.add_argument("--ca-cert", required=True)
    parser.add_argument("connect_uri")
    asyncio.run(main(parser.parse_args()))
