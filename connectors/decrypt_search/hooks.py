"""Business hooks: a user's Python function called for each new record.

A hook is named ``package.module:function`` in ``[[hooks]]`` and called as
``function(record, context)`` after the record is committed, where
``record`` is the stored record (a dict: ``id``, ``topic``, ``sender``,
``created``, ``document``, ...) and ``context`` a :class:`HookContext`
(``context.publish(topic, document, recipients=None)`` seals, signs and
publishes a follow-up event; ``context.log`` is a Twisted logger).  It may
return a Deferred or be a coroutine function.  Whatever it raises, at once or
later, is counted and logged; replication never waits for it and never stops
because of it.
"""

import inspect

from twisted.internet import defer
from twisted.logger import Logger

from .config import import_callable

log = Logger(namespace="decrypt_search.hooks")


class HookContext:
    def __init__(self, publish) -> None:
        self._publish = publish
        self.log = Logger(namespace="decrypt_search.hook")

    def publish(self, topic: str, document, recipients=None) -> defer.Deferred:
        return self._publish(topic, document, recipients)


def load(targets) -> list:
    return [(target, import_callable(target, f"hooks[{i}].function")) for i, target in enumerate(targets)]


class Hooks:
    def __init__(self, functions, context: HookContext) -> None:
        self.functions = functions
        self.context = context
        self.calls = 0
        self.errors = 0
        self.errors_by_hook: dict[str, int] = {}

    def run(self, record: dict) -> None:
        for target, function in self.functions:
            self.calls += 1
            try:
                result = function(record, self.context)
                if inspect.isawaitable(result):
                    result = defer.ensureDeferred(result)
            except Exception:
                self._failed(target, record, None)
                continue
            if isinstance(result, defer.Deferred):
                result.addErrback(lambda f, t=target: self._failed(t, record, f))

    def _failed(self, target: str, record: dict, failure) -> None:
        self.errors += 1
        self.errors_by_hook[target] = self.errors_by_hook.get(target, 0) + 1
        if failure is None:
            log.failure("hook {hook} failed on record {id}", hook=target, id=record.get("id"))
        else:
            log.failure("hook {hook} failed on record {id}", failure, hook=target, id=record.get("id"))

    def describe(self) -> dict:
        return {"hooks": [t for t, _ in self.functions], "calls": self.calls, "errors": self.errors,
                "errors_by_hook": dict(self.errors_by_hook)}
