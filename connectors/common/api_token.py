"""The bearer token that guards a connector's local HTTP API.

A port on loopback is no boundary: every user and process on the host can
reach it.  So the local API asks for ``Authorization: Bearer <token>`` on
every request.  The token comes, in this order, from ``--api-token-file``
(refused unless ``chmod 600``), from the environment (``<PREFIX>_API_TOKEN``),
or from ``<state-dir>/api-token``, written once (0600, 32 random bytes as
hex) and reused, so the agent reads it from there.  It is never logged,
never remembered as an option, and compared in constant time.
"""

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field

from relayrouter.api import ConfigError, check_private_file, read_secret_file

FILE_NAME = "api-token"
MIN_LENGTH = 16


@dataclass(frozen=True)
class ApiToken:
    token: str = field(repr=False)
    source: str  # where it came from, for the log: a file path or the variable's name

    def admits(self, header: bytes | None) -> bool:
        """``Authorization`` header value -> whether it carries this token (constant time)."""
        kind, _, given = (header or b"").partition(b" ")
        given_digest = hashlib.sha256(given.strip()).digest()
        wanted_digest = hashlib.sha256(self.token.encode("utf-8")).digest()
        return hmac.compare_digest(kind.lower(), b"bearer") & hmac.compare_digest(given_digest, wanted_digest)


def load_api_token(token_file: str | None, env_value: str | None, env_name: str, state_dir: str) -> ApiToken:
    if token_file:
        check_private_file(token_file, "--api-token-file")
        return _checked(read_secret_file(token_file, "--api-token-file"), token_file, "--api-token-file")
    if env_value:
        return _checked(env_value.strip(), env_name, env_name)
    return ApiToken(_generated(os.path.join(state_dir, FILE_NAME)), os.path.join(state_dir, FILE_NAME))


def _checked(token: str, source: str, what: str) -> ApiToken:
    if len(token) < MIN_LENGTH or any(c.isspace() for c in token):
        raise ConfigError(f"{what}: the API token must be at least {MIN_LENGTH} characters, without spaces")
    return ApiToken(token, source)


def _generated(path: str) -> str:
    """The token kept in the state directory, made on first use."""
    if not os.path.exists(path):
        token = secrets.token_hex(32)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another start made it meanwhile: read theirs
        except OSError as e:
            raise ConfigError(f"--state-dir: cannot write {path}: {e.strerror}") from None
        else:
            with os.fdopen(descriptor, "w", encoding="utf-8") as f:
                f.write(token + "\n")
    check_private_file(path, "--state-dir")
    return _checked(read_secret_file(path, "--state-dir"), path, path).token
