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


def _plain_unless_extra(with_extra, plain):
    def build(extra: dict | None, *args, **kwargs):
        # The subclass costs about a microsecond more to build: only when needed.
        if extra:
            return with_extra(*args, extra=extra, **kwargs)
        return plain(*args, **kwargs)

    build.__doc__ = f"A plain {plain.__name__} unless there are extra details to carry."
    return build


event = _plain_unless_extra(Event, m.Event)
invocation = _plain_unless_extra(Invocation, m.Invocation)
result = _plain_unless_extra(Result, m.Result)
error = _plain_unless_extra(Error, m.Error)
