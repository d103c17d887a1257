"""The twistd plugins' service maker: a plugin whose extra is missing says so in one line."""

from twisted.application.service import ServiceMaker

from . import extras


class Plugin(ServiceMaker):
    """A ServiceMaker that checks ``extra`` (see :mod:`relayrouter.extras`) before importing the plugin."""

    def __init__(self, name: str, module: str, description: str, extra: str | None = None) -> None:
        super().__init__(name, module, description, name)
        self.extra = extra

    @property
    def options(self):
        if self.extra is not None:
            extras.require(f"the {self.tapname}", self.extra)
        return super().options
