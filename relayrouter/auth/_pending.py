"""A one-shot result that callbacks chain on.

This is the part of Twisted's ``Deferred`` contract the session relies on
(``addBoth`` returns the same object, each callback's return value is the next
one's input), so pure modules can hand back "a decision, later" without
importing Twisted.  An exception raised by a callback is passed on as the next
callback's input, as a ``Failure`` would be.
"""

from typing import Any, Callable

_UNSET = object()


class Pending:
    __slots__ = ("_callbacks", "_result")

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Any], Any]] = []
        self._result: Any = _UNSET

    @property
    def fired(self) -> bool:
        return self._result is not _UNSET

    def addBoth(self, callback: Callable[[Any], Any]) -> "Pending":  # noqa: N802 - Deferred's name
        self._callbacks.append(callback)
        if self.fired:
            self._run()
        return self

    def fire(self, result: Any = None) -> None:
        if self.fired:
            raise RuntimeError("Pending fired twice")
        self._result = result
        self._run()

    def _run(self) -> None:
        while self._callbacks:
            callback = self._callbacks.pop(0)
            try:
                self._result = callback(self._result)
            except Exception as e:  # handed on, like a Failure
                self._result = e
