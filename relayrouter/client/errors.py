"""The one error a connector raises for bad configuration."""


class ConfigError(ValueError):
    """Bad configuration; the message names the option (``--ticket-file: ...``)."""
