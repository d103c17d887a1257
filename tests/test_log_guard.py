"""The guard of tests/conftest.py sees what it is meant to see.

Each test provokes a fault inside its own guard (``log_guard.watch``) and
declares it to the outer, autouse one, then checks what the inner guard says."""

import pytest_twisted
from twisted.internet import defer
from twisted.logger import Logger

from . import log_guard
from .support import connect_raw


def test_an_unhandled_deferred_failure_is_caught(logged_errors):
    logged_errors.expect(r"Unhandled error in Deferred")
    logged_errors.expect(r"ZeroDivisionError")
    guard = log_guard.watch()
    defer.fail(ZeroDivisionError("nobody handles me"))  # dropped at once
    problems = log_guard.finish(guard)
    assert any("Unhandled error in Deferred" in p for p in problems), problems
    assert any("ZeroDivisionError: nobody handles me" in p for p in problems), problems


def test_a_failure_kept_alive_past_a_tests_end_is_found_once_its_module_is_done(logged_errors):
    """What a test's guard froze (alive at its end) and what became garbage later in a cycle,
    which only the collector frees, is found by the module's collection."""
    logged_errors.expect(r"Unhandled error in Deferred")
    logged_errors.expect(r"KeyError")
    cycle = {"deferred": defer.fail(KeyError("kept past its test"))}
    cycle["itself"] = cycle
    guard = log_guard.watch()
    assert log_guard.finish(guard) == []  # alive: frozen
    guard = log_guard.watch()
    del cycle  # garbage now, but frozen: a test's collection does not look at it
    assert log_guard.finish(guard) == []
    problems = log_guard.finish_module()
    assert any("KeyError: 'kept past its test'" in p for p in problems), problems


def test_an_error_and_a_traceback_are_caught_a_warning_is_not(logged_errors):
    logged_errors.expect(r"an error")
    logged_errors.expect(r"with a traceback")
    guard = log_guard.watch()
    log = Logger(namespace="relayrouter.test")
    log.warn("only a warning")
    log.error("an error")
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("with a traceback")
    problems = log_guard.finish(guard)
    assert len(problems) == 2, problems
    assert "[error relayrouter.test] an error" in problems[0]
    assert "with a traceback" in problems[1] and "ZeroDivisionError" in problems[1]


def test_expected_errors_must_happen_and_must_match(logged_errors):
    logged_errors.expect(r"the one we provoke")
    logged_errors.expect(r"another one")
    guard = log_guard.watch()
    guard.expect(r"the one we provoke")
    guard.expect(r"one that never comes")
    log = Logger()
    log.error("the one we provoke")
    log.error("another one")
    problems = log_guard.finish(guard)
    assert problems == [
        "logged and not expected:\n[error tests.test_log_guard] another one",
        "expected a logged error matching 'one that never comes', none was logged",
    ]


@pytest_twisted.inlineCallbacks
def test_an_internal_error_of_the_running_router_is_caught(running, monkeypatch, logged_errors):
    logged_errors.expect(r"Internal error handling a message")
    broker = running.realm().broker

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the broker")

    monkeypatch.setattr(broker, "subscribe", broken)
    guard = log_guard.watch()
    raw = yield connect_raw(running)
    yield raw.hello()
    raw.send([32, 1, {}, "com.example.topic"])
    yield raw.closed()
    problems = log_guard.finish(guard)
    assert len(problems) == 1, problems
    assert "Internal error handling a message" in problems[0]
    assert "RuntimeError: a bug in the broker" in problems[0]
