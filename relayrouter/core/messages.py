"""Outbound messages that carry details Autobahn's classes do not know.

Autobahn's message classes drop options they were not written for, such as
Payload Passthru Mode's ``ppt_scheme``, ``ppt_serializer``, ``ppt_cipher`` and
``ppt_keyid``.  The router reads those from the raw message it received and
forwards them with these subclasses, which merge ``extra`` into the details
dict when marshalling.  ``Message.serialize`` calls ``marshal``, so bytes are
still made once per serializer and shared by every receiver.
"""

from autobahn.wamp import message as m

# "CALL.Options.ppt_scheme|string ... MUST be forwarded via INVOCATION, EVENT and RESULT ... and ERROR"
PPT_KEYS = ("ppt_scheme", "ppt_serializer", "ppt_cipher", "ppt_keyid")


def ppt_options(options) -> dict | None:
    """The Payload Passthru Mode options of a raw Options dict, or None when absent."""
    if type(options) is not dict or "ppt_scheme" not in options:
        return None
    return {key: options[key] for key in PPT_KEYS if key in options}


def _with_extra(cls, details_index: int):
    class WithExtra(cls):
        __slots__ = ("extra",)

        def __init__(self, *args, extra: dict | None = None, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.extra = extra

        def marshal(self) -> list:
            raw = super().marshal()
            if self.extra:
                raw[details_index] = {**raw[details_index], **self.extra}
            return raw

    WithExtra.__name__ = WithExtra.__qualname__ = cls.__name__
    return WithExtra


Event = _with_extra(m.Event, 3)  # [EVENT, Subscription, Publication, Details, ...]
Invocation = _with_extra(m.Invocation, 3)  # [INVOCATION, Request, Registration, Details, ...]
Result = _with_extra(m.Result, 2)  # [RESULT, Request, Details, ...]
Error = _with_extra(m.Error, 3)  # [ERROR, Type, Request, Details, Error, ...]


def event(extra: dict | None, *args, **kwargs) -> m.Event:
    """A plain Event unless there are extra details to carry (the hot path stays Autobahn's)."""
    if extra:
        return Event(*args, extra=extra, **kwargs)
    return m.Event(*args, **kwargs)
