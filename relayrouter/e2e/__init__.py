"""End-to-end encrypted payloads: envelopes the router forwards and never reads.

    from relayrouter import e2e

    acme = e2e.load_private("acme.key")               # our X25519 + Ed25519 key pairs
    globex = e2e.load_public("globex.pub")            # a recipient's public keys
    envelope = e2e.seal({"order": 7}, "com.orders.new", acme, [acme.public, globex])
    opened = e2e.open_envelope(envelope, acme, {acme.public.signing_kid: acme.public})

``seal`` / ``open_envelope`` are pure functions over bytes (envelope.py);
``publish_sealed`` sends an envelope from Autobahn-Python as WAMP Payload
Passthru (wamp.py); keys.py reads and writes key files.  docs/reference/e2e.md,
"End-to-end envelope", specifies the format for other languages.
"""

from .envelope import (
    BAD_SIGNATURE,
    MALFORMED,
    NOT_ADDRESSED,
    PPT_CIPHER,
    PPT_SCHEME,
    REASONS,
    RETIRED_KEY,
    UNDECRYPTABLE,
    UNKNOWN_SENDER,
    WRONG_TOPIC,
    EnvelopeError,
    Opened,
    Parsed,
    open_envelope,
    parse,
    ppt_options,
    seal,
)
from .keys import (
    FileKeys,
    KeyFileError,
    PrivateKeys,
    PublicKeys,
    key_id,
    load_private,
    load_private_env,
    load_public,
)

__all__ = [
    "BAD_SIGNATURE", "MALFORMED", "NOT_ADDRESSED", "PPT_CIPHER", "PPT_SCHEME", "REASONS", "RETIRED_KEY", "UNDECRYPTABLE",
    "UNKNOWN_SENDER", "WRONG_TOPIC", "EnvelopeError", "FileKeys", "KeyFileError", "Opened", "Parsed", "PrivateKeys",
    "PublicKeys", "key_id", "load_private", "load_private_env", "load_public", "open_envelope", "parse",
    "ppt_options", "publish_sealed", "seal",
]


def publish_sealed(*args, **kwargs):
    """See :func:`relayrouter.e2e.wamp.publish_sealed` (imported lazily: it needs Autobahn's session)."""
    from .wamp import publish_sealed as publish

    return publish(*args, **kwargs)
