"""The Twisted side: WebSocket and RawSocket listeners feeding the sans-IO core."""
