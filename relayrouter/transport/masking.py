"""Unmasking small WebSocket frames faster than Autobahn's native masker.

Every frame a client sends is XOR-masked with a 4-byte key.  Autobahn's NVX
masker is fast per byte but costs several microseconds to set up per frame,
which dominates for the small messages WAMP mostly carries.  For payloads
under 1 KiB we XOR with Python's big integers instead (about four times
faster there); larger payloads keep the native masker.  It is installed
into Autobahn's WebSocket protocol module, which looks the factory up by name
for every frame, by autobahn_overrides.install_masker().
"""

from autobahn.websocket.xormasker import create_xor_masker as _native_masker

SMALL = 1024


class SmallPayloadMasker:
    """Autobahn's masker interface (pointer, reset, process) on int XOR."""

    __slots__ = ("_mask", "_ptr")

    def __init__(self, mask: bytes) -> None:
        self._mask = bytes(mask)
        self._ptr = 0

    def pointer(self) -> int:
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: bytes) -> bytes:
        n = len(data)
        if not n:
            return b""
        shift = self._ptr & 3
        mask = self._mask[shift:] + self._mask[:shift] if shift else self._mask
        self._ptr += n
        key = (mask * (n // 4 + 1))[:n]
        return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def create_xor_masker(mask: bytes, length: int | None = None):
    if length is not None and length < SMALL:
        return SmallPayloadMasker(mask)
    return _native_masker(mask, length)

