"""The options every connector's ``tap.py`` shares, each with an environment variable.

Mix :class:`ConnectorOptions` into a ``twisted.python.usage.Options`` and set
``env_prefix``; every option then also reads ``<PREFIX>_<OPTION>`` (dashes
become underscores, ``--ticket-file`` -> ``MEDIATOR_PROXY_TICKET_FILE``).
A value given on the command line wins over the environment, the environment
over what :meth:`resolve` is handed as remembered (``persisted``), that over
the default.  Secrets have no command-line option (``ps`` would show them):
the ticket or JWT comes from ``<PREFIX>_TICKET`` / ``<PREFIX>_JWT`` or from
the file named by ``--ticket-file`` / ``--jwt-file``.

``--help`` names each option's variable.  A bad value stops the start with
``configuration error: --retry-max (MEDIATOR_PROXY_RETRY_MAX): ...``.
"""

import os

from twisted.python import usage

from relayrouter.api import (ConfigError, Credentials, RouterSettings, TlsClient, load_cryptosign_key, read_secret_file,
                             runfiles)


# name: (default, type)
ROUTER_DEFAULTS = {
    "router": ("ws://127.0.0.1:8080/ws", str),
    "realm": ("realm1", str),
    "authid": (None, str),
    "auth": (None, str),
    "ticket-file": (None, str),
    "jwt-file": (None, str),
    "cryptosign-key": (None, str),
    "tls-cert": (None, str),
    "tls-key": (None, str),
    "ca-cert": (None, str),
    "serializer": ("cbor", str),
    "retry-initial": (0.5, float),
    "retry-max": (30.0, float),
    "auth-retry": (60.0, float),
    "state-dir": (None, str),
}
SECRET_ENV = ("TICKET", "JWT")  # environment only: <PREFIX>_TICKET, <PREFIX>_JWT


class ConnectorOptions:
    """Router, authentication and state-dir options; mix in before usage.Options."""

    env_prefix = "CONNECTOR"
    connector_defaults: dict = {}  # a subclass's own options: name -> (default, type)
    state_dir_default = "./connector-state"

    optParameters = [
        ["router", None, None, "Router URL: ws://, wss://, rs:// or rss://host:port[/path]"
                               " (default ws://127.0.0.1:8080/ws)."],
        ["realm", None, None, "Realm to join (default realm1)."],
        ["authid", None, None, "Authentication id (required for --auth ticket; optional otherwise)."],
        ["auth", None, None, "anonymous, ticket, jwt, cryptosign or tls (default: the one whose credential is given)."],
        ["ticket-file", None, None, "File holding the ticket (or put the ticket itself in <PREFIX>_TICKET)."],
        ["jwt-file", None, None, "File holding the JWT, read again at every connection so a renewed token is"
                                 " used (or put the token itself in <PREFIX>_JWT)."],
        ["cryptosign-key", None, None, "Ed25519 private key file (OpenSSH, 'private-key-ed25519: <hex>',"
                                       " 64 hex or 32 raw bytes); must be chmod 600."],
        ["tls-cert", None, None, "Client certificate (PEM) for wss:// or rss://; with --auth tls it is the credential."],
        ["tls-key", None, None, "Private key (PEM) of --tls-cert; must be chmod 600."],
        ["ca-cert", None, None, "CA certificates (PEM) to verify the router by (default: the system's)."],
        ["serializer", None, None, "cbor, msgpack or json (default cbor)."],
        ["retry-initial", None, None, "Seconds before the first reconnection attempt (default 0.5; doubles, with jitter)."],
        ["retry-max", None, None, "Most seconds between reconnection attempts (default 30)."],
        ["auth-retry", None, None, "Least seconds between attempts after the router refused our credential (default 60)."],
        ["state-dir", None, None, "Directory for what the connector keeps (created 0700)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sources: dict[str, str] = {}
        for name in self._env_names():
            if name in self.docs:
                doc = self.docs[name].replace("<PREFIX>", self.env_prefix)
                self.docs[name] = f"{doc} [env {self.env_name(name)}]"

    # -------------------------------------------------------------- values

    def plugin_name(self) -> str:
        """The twistd plugin's name: ``IOT_AGENT`` -> ``iot-agent``."""
        return self.env_prefix.lower().replace("_", "-")

    def env_name(self, name: str) -> str:
        return f"{self.env_prefix}_{name.upper().replace('-', '_')}"

    def _env_names(self):
        return list(ROUTER_DEFAULTS) + list(self.connector_defaults)

    def _all_defaults(self) -> dict:
        merged = dict(ROUTER_DEFAULTS)
        merged["state-dir"] = (self.state_dir_default, str)
        merged.update(self.connector_defaults)
        return merged

    def resolve(self, persisted: dict | None = None, env=None) -> None:
        """Fill every option not given: environment, then ``persisted``, then default; coerce types."""
        env = os.environ if env is None else env
        persisted = persisted or {}
        for name, (default, kind) in self._all_defaults().items():
            # Given on the command line, unless an earlier resolve() filled it in (again: idempotent).
            given = self.sources.get(name, "command line") == "command line"
            value, source = (self.get(name) if given else None), "command line"
            if value is None and env.get(self.env_name(name)):
                value, source = env[self.env_name(name)], "environment"
            if value is None and persisted.get(name) is not None:
                value, source = persisted[name], "state"
            if value is None:
                value, source = default, "default"
            self[name] = self._coerce(name, value, kind)
            self.sources[name] = source
        self._env = env

    def _coerce(self, name: str, value, kind):
        if value is None or isinstance(value, kind) and not isinstance(value, bool):
            return value
        try:
            if kind is bool:
                return _boolean(value)
            return kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.describe_option(name)}: {value!r} is not a valid {kind.__name__}") from None

    def describe_option(self, name: str) -> str:
        return f"--{name} ({self.env_name(name)})"

    def remembered(self) -> dict:
        """The options worth persisting: everything not secret that was given (not defaults)."""
        return {name: self[name] for name, source in self.sources.items() if source != "default"}

    # ------------------------------------------------------------ building

    def postOptions(self) -> None:
        """twistd's hook: :meth:`build`, a :class:`ConfigError` becoming the
        usage error twistd prints (``configuration error: --option (ENV): ...``)."""
        runfiles.own_twistd_files(getattr(self, "parent", None), self.plugin_name())
        try:
            self.build()
        except ConfigError as e:
            raise runfiles.ConfigurationRefused(self.plugin_name(), e) from None

    def build(self) -> None:
        """Resolve the options, then a connector's own checks (override, calling resolve first)."""
        self.resolve()

    def require_above_zero(self, *names: str) -> None:
        for name in names:
            if self[name] <= 0:
                raise ConfigError(f"{self.describe_option(name)}: must be above 0")

    def require_http_url(self, name: str, what: str | None = None) -> None:
        """Option ``name`` is an http:// or https:// URL; required when ``what`` says what it is for."""
        value = self[name]
        if not value:
            if what is None:
                return
            raise ConfigError(f"{self.describe_option(name)}: required ({what})")
        if not value.startswith(("http://", "https://")):
            raise ConfigError(f"{self.describe_option(name)}: {value!r} is not an http:// or https:// URL")

    def router_settings(self) -> RouterSettings:
        try:
            credentials = self._credentials()
            tls = None
            if self["ca-cert"] or self["tls-cert"] or self["tls-key"]:
                tls = TlsClient(self["ca-cert"], self["tls-cert"], self["tls-key"])
            return RouterSettings(
                url=self["router"], realm=self["realm"], credentials=credentials, tls=tls,
                serializer=self["serializer"], retry_initial=self["retry-initial"],
                retry_max=self["retry-max"], auth_retry=self["auth-retry"])
        except ConfigError as e:
            raise ConfigError(self._with_env(str(e))) from None

    def _with_env(self, message: str) -> str:
        """``--x: ...`` -> ``--x (PREFIX_X): ...`` when --x is one of ours."""
        head, sep, rest = message.partition(":")
        name = head.split()[0][2:] if head.startswith("--") else None
        if sep and name in self._all_defaults() and head == f"--{name}":
            return f"{self.describe_option(name)}:{rest}"
        return message

    def _credentials(self) -> Credentials:
        env = getattr(self, "_env", os.environ)
        ticket = env.get(f"{self.env_prefix}_TICKET") or None
        jwt = env.get(f"{self.env_prefix}_JWT") or None
        if self["ticket-file"]:
            ticket = read_secret_file(self["ticket-file"], "--ticket-file")
        if self["jwt-file"]:
            jwt = read_secret_file(self["jwt-file"], "--jwt-file")
        method = self["auth"] or _infer_method(ticket, jwt, self["cryptosign-key"], self["tls-cert"])
        key = load_cryptosign_key(self["cryptosign-key"]) if method == "cryptosign" and self["cryptosign-key"] else None
        secret = {"ticket": ticket, "jwt": jwt}.get(method)
        secret_file = {"ticket": self["ticket-file"], "jwt": self["jwt-file"]}.get(method)
        return Credentials(method=method, authid=self["authid"], secret=secret, key=key, secret_file=secret_file)


def _infer_method(ticket, jwt, key, cert) -> str:
    """The method whose credential is given; a client certificate alone means ``tls``."""
    given = [m for m, v in (("jwt", jwt), ("ticket", ticket), ("cryptosign", key)) if v]
    if len(given) > 1:
        raise ConfigError(f"--auth: credentials for {' and '.join(given)} are given; say which to use")
    return given[0] if given else ("tls" if cert else "anonymous")


def _boolean(value) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(value)

