"""Publishing envelopes from Autobahn-Python as WAMP Payload Passthru.

The WAMP spec carries an end-to-end payload as PUBLISH
``[16, Request, {"ppt_scheme": ..., "ppt_serializer": ..., "ppt_cipher": ...,
"ppt_keyid": ...}, Topic, [envelope]]``, and a peer must announce the
``payload_passthru_mode`` feature in HELLO to use it.  Autobahn-Python 26.x
does neither (its own ``enc_algo`` form predates the spec), so this module
adds both through the smallest surface it can: extra role features on one
session, and a ``Publish`` subclass that merges the ``ppt_*`` options.

Subscribers need nothing special: the envelope arrives as the event's only
positional argument (bytes) and is self-describing; pass it to
:func:`relayrouter.e2e.open_envelope`.
"""

import copy

import txaio
from autobahn.wamp import message
from autobahn.wamp.request import PublishRequest

from .envelope import ppt_options, seal

PPT_FEATURE = "payload_passthru_mode"
PPT_ROLES = ("publisher", "subscriber", "caller", "callee")


def enable_payload_passthru(session) -> None:
    """Announce ``payload_passthru_mode`` in this session's HELLO; call it before ``join``."""
    roles = {}
    for name, features in session._session_roles.items():
        features = copy.copy(features)
        if name in PPT_ROLES:
            setattr(features, PPT_FEATURE, True)
        roles[name] = features
    session._session_roles = roles


class PassthruPublish(message.Publish):
    """A PUBLISH whose Options also carry the ppt_* keys."""

    def __init__(self, *args, ppt: dict, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ppt = ppt

    def marshal_options(self) -> dict:
        return {**super().marshal_options(), **self.ppt}


def publish_envelope(session, topic: str, envelope: bytes, acknowledge: bool = False,
                     exclude_me: bool | None = None):
    """Publish ``envelope`` on ``topic``; a Deferred for PUBLISHED when ``acknowledge``, else None."""
    request_id = session._request_id_gen.next()
    msg = PassthruPublish(request_id, topic, args=[envelope], acknowledge=True if acknowledge else None,
                          exclude_me=exclude_me, ppt=ppt_options(envelope))
    on_reply = None
    if acknowledge:
        # registered before send: an in-memory transport may answer at once
        on_reply = txaio.create_future()
        session._publish_reqs[request_id] = PublishRequest(request_id, on_reply, was_encrypted=False)
    try:
        session._transport.send(msg)
    except Exception:
        session._publish_reqs.pop(request_id, None)
        raise
    return on_reply


def publish_sealed(session, topic: str, document, sender, recipients, acknowledge: bool = False,
                   serializer: str = "json"):
    """Seal ``document`` for ``recipients``, signed by ``sender``, and publish it on ``topic``."""
    envelope = seal(document, topic, sender, recipients, serializer=serializer)
    return publish_envelope(session, topic, envelope, acknowledge=acknowledge)
