"""The router's log formats: Twisted's text (the default) or one JSON object per line.

``twistd relayrouter --log-format json`` (or ``RELAYROUTER_LOG_FORMAT=json``)
hands twistd a log observer factory through its own ``--logger`` hook, so the
destination stays what twistd's options say (``--logfile``, stdout with
``-n``).  Each line is one JSON object made of the event's formatted text and
the fields an operator filters on, picked by name: never the whole event,
so a value passed to a log call for formatting only cannot leak by being
serialized.
"""

import json
import sys
from datetime import datetime, timezone

from twisted.logger import FileLogObserver, formatEvent
from twisted.python.logfile import LogFile

FORMATS = ("text", "json")
ENV = "RELAYROUTER_LOG_FORMAT"

# Event keys copied into the JSON object when a log call gives them.
CONTEXT_KEYS = ("realm", "session", "peer", "authid", "authrole", "authmethod", "reason", "uri")

# twistd's options, kept between option parsing and the moment twistd asks
# for the observer (it calls the factory with no arguments).
_twistd_options: dict = {}


def event_as_json(event: dict) -> str:
    """One log event as one line of JSON (with its newline)."""
    level = event.get("log_level")
    record = {
        "time": _iso(event.get("log_time")),
        "level": level.name if level is not None else "info",
        "namespace": event.get("log_namespace"),
        "event": formatEvent(event),
    }
    for key in CONTEXT_KEYS:
        value = event.get(key)
        if value is not None:
            record[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    system = event.get("log_system")
    if system not in (None, "-"):
        record["system"] = system
    failure = event.get("log_failure")
    if failure is not None:
        record["error"] = failure.getErrorMessage()
        record["traceback"] = failure.getTraceback()
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def json_file_observer(out) -> FileLogObserver:
    return FileLogObserver(out, event_as_json)


def _iso(when) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------- twistd


def use_json_with_twistd(server_options) -> None:
    """Make twistd log JSON: called while ``twistd relayrouter`` parses its options."""
    if server_options.get("logger"):
        raise ValueError("--log-format json: twistd's --logger is given too; use one of them")
    if server_options.get("syslog"):
        raise ValueError("--log-format json: not with --syslog (JSON goes to the log file or stdout)")
    _twistd_options.update(
        logfile=server_options.get("logfile"), nodaemon=bool(server_options.get("nodaemon")))
    # twistd resolves --logger by name once every option is parsed.
    server_options["logger"] = f"{__name__}.twistd_observer"


def twistd_observer() -> FileLogObserver:
    """The observer twistd starts logging to: where twistd itself would write."""
    logfile, nodaemon = _twistd_options.get("logfile"), _twistd_options.get("nodaemon", False)
    if logfile == "-" or (nodaemon and not logfile):
        if not nodaemon:
            sys.exit("Daemons cannot log to stdout, exiting!")
        return json_file_observer(sys.stdout)
    return json_file_observer(LogFile.fromFullPath(logfile or "twistd.log"))
