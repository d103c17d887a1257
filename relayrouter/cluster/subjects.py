"""WAMP URIs as NATS subjects.

An event on topic ``a.b.c`` of realm ``lab`` goes out once, on the subject
``<prefix>.ev.lab.a.b.c``.  Each URI component becomes one subject token,
escaped: NATS reserves ``.`` (the separator, never inside a WAMP component),
``*`` and ``>`` (its wildcards) and white space, and an empty token is not a
subject; so ``%``, ``*``, ``>``, control characters, white space and
everything outside ASCII are written ``%XX`` (each UTF-8 byte), and an empty
component is ``%`` alone (which escaping never yields otherwise).  A realm
name is one token, its dots escaped too.

What a node subscribes to, per WAMP match policy:

- exact ``a.b``      -> ``…lab.a.b`` (the literal subject);
- wildcard ``a..c``  -> ``…lab.a.*.c`` (an empty component is ``*``);
- prefix ``a.b``     -> ``…lab.a.>``: a WAMP prefix matches by characters
  (``a.b`` matches ``a.bc``), NATS ``>`` by whole tokens, so the node takes
  every event under the prefix's last complete component and its broker
  keeps those that really match (the others are counted as unmatched).  A
  prefix ending in a dot (``a.b.``) is exact: ``…lab.a.b.>``.  The empty
  prefix and a one-component prefix ``a`` take the whole realm (``…lab.>``).

Plain functions, no I/O.
"""

import re

from ..core.matching import EXACT, PREFIX, WILDCARD

EVENTS = "ev"
# A topic whose components are all printable ASCII but % * > (what escape() keeps) and
# none empty is its own subject tail: checked once per publication, not per character.
_PLAIN_TOPIC = re.compile(r"[!-$&-)+\-/-=?-~]+(?:\.[!-$&-)+\-/-=?-~]+)*").fullmatch


def escape(component: str, dots: bool = False) -> str:
    """One URI component (or realm name, ``dots=True``) as a subject token."""
    if not component:
        return "%"
    out = []
    for c in component:
        if c in "%*>" or c <= " " or c > "~" or (dots and c == "."):
            out.extend(f"%{b:02X}" for b in c.encode("utf8"))
        else:
            out.append(c)
    return "".join(out)


def unescape(token: str) -> str:
    if token == "%":
        return ""
    if "%" not in token:
        return token
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "%":
            raw += bytes.fromhex(token[i + 1:i + 3])
            i += 3
        else:
            raw += token[i].encode("ascii")
            i += 1
    return raw.decode("utf8")


def realm_base(prefix: str, realm: str) -> str:
    return f"{prefix}.{EVENTS}.{escape(realm, dots=True)}"


def event_subject(base: str, topic: str) -> str:
    """The one subject an event on ``topic`` is published on."""
    if _PLAIN_TOPIC(topic) is not None:
        return base + "." + topic
    return base + "." + ".".join(escape(c) for c in topic.split("."))


def interest_subject(base: str, uri: str, match: str) -> str:
    """The subject a node subscribes to for a WAMP subscription (uri, match)."""
    if match == EXACT:
        return event_subject(base, uri)
    parts = uri.split(".")
    if match == WILDCARD:
        return base + "." + ".".join("*" if c == "" else escape(c) for c in parts)
    if match == PREFIX:
        head = parts[:-1]  # the last component may be partial; "" when the prefix ends in "."
        return base + "." + "".join(escape(c) + "." for c in head) + ">"
    raise ValueError(f"unknown match policy {match!r}")


def heartbeat_subject(prefix: str) -> str:
    return f"{prefix}.hb"


def meta_subject(prefix: str) -> str:
    """Where every node answers questions about its sessions and subscriptions (cluster/view.py)."""
    return f"{prefix}.meta"


def node_subject(prefix: str, node: str) -> str:
    """Where one node alone answers (node names are subject tokens, see clusterconfig)."""
    return f"{prefix}.node.{node}"


def bucket_name(prefix: str, what: str) -> str:
    """A JetStream KV bucket of the cluster: ``<prefix with . -> _>_<what>``."""
    return prefix.replace(".", "_") + "_" + what


def rpc_hello_subject(prefix: str) -> str:
    """Where nodes say which process (incarnation) runs under their name (cluster/forwarding.py)."""
    return f"{prefix}.rpchello"


def rpc_turns_subject(prefix: str) -> str:
    """Where nodes tell the turns they took of roundrobin registrations (cluster/turns.py)."""
    return f"{prefix}.rpcturns"


def rpc_subject(prefix: str, node: str) -> str:
    """Where calls for ``node``'s callees, and answers for its callers, arrive."""
    return f"{prefix}.rpc.{escape(node, dots=True)}"


def login_failures_subject(prefix: str) -> str:
    """Where nodes tell each other of the failed logins they verified (cluster/limits.py)."""
    return f"{prefix}.authfail"
