"""Small helpers the mediator-proxy's workers share."""

import time

from autobahn.wamp.exception import ApplicationError


def trouble(kind: str, message: str) -> dict:
    return {"kind": kind, "message": message, "at": time.time()}


def describe_error(failure) -> str:
    e = failure.value if hasattr(failure, "value") else failure
    if isinstance(e, ApplicationError):
        return e.error_message()
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text and type(e).__name__ not in text else (text or type(e).__name__)
