"""A mailbox rule (``[[realms.mailboxes]]``): plain data, what the
configuration reads and checks, apart from the mailboxes that run by it
(:mod:`.mailbox`)."""

import hashlib
import hmac
import re
from dataclasses import dataclass, field

REFUSE = "refuse"
DROP_OLDEST = "drop-oldest"
OVERFLOW_POLICIES = (REFUSE, DROP_OLDEST)
HTTP_MODES = ("token", "open", "off")

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class MailboxRule:
    uri: str  # e.g. "mailbox.{authid}"
    max_messages: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_age: float = 7 * 86400.0  # seconds; 0 keeps messages until taken
    overflow: str = REFUSE
    visibility_timeout: float = 60.0
    max_messages_per_sender: int = 1000
    max_bytes_per_sender: int = 8 * 1024 * 1024
    http: str = "token"  # POST /mailbox/{name}: token | open | off
    token_secret: bytes | None = field(default=None, repr=False)

    @property
    def owner_field(self) -> str:
        return _PLACEHOLDER.search(self.uri).group(1)

    def pattern(self) -> re.Pattern:
        before, after = _PLACEHOLDER.split(self.uri, maxsplit=1)[0::2]
        return re.compile(re.escape(before) + r"([^.#\s]+)" + re.escape(after) + r"\Z")

    def token(self, realm: str, uri: str) -> str | None:
        """The credential HTTP senders need for this mailbox (None: not token mode)."""
        if self.token_secret is None:
            return None
        return hmac.new(self.token_secret, f"{realm}\n{uri}".encode(), hashlib.sha256).hexdigest()


def rule_problem(uri: str) -> str | None:
    """Why a mailbox URI pattern is unusable, or None."""
    found = _PLACEHOLDER.findall(uri)
    if len(found) != 1:
        return "must hold exactly one placeholder such as {authid} (or {<claim>})"
    return None
