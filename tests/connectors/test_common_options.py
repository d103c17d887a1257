"""ConnectorOptions.postOptions: every connector's checks end in one line naming option and variable (no usage text)."""

import pytest
from twisted.python import usage

from connectors.common import ConnectorOptions


class Options(ConnectorOptions, usage.Options):
    env_prefix = "TEST_CONNECTOR"
    connector_defaults = {"endpoint": (None, str), "count": (1, int), "timeout": (1.0, float)}
    optParameters = ConnectorOptions.optParameters + [
        ["endpoint", None, None, "An http(s) URL."],
        ["count", None, None, "How many."],
        ["timeout", None, None, "Seconds."],
    ]

    def build(self) -> None:
        self.resolve(env={})
        self.require_http_url("endpoint", "where to post")
        self.require_above_zero("count", "timeout")
        self.built = True


@pytest.mark.parametrize("argv, message", [
    ([], "--endpoint (TEST_CONNECTOR_ENDPOINT): required (where to post)"),
    (["--endpoint", "ftp://x"], "--endpoint (TEST_CONNECTOR_ENDPOINT): 'ftp://x' is not an http:// or https:// URL"),
    (["--endpoint", "http://x", "--count", "0"], "--count (TEST_CONNECTOR_COUNT): must be above 0"),
    (["--endpoint", "http://x", "--timeout", "-1"], "--timeout (TEST_CONNECTOR_TIMEOUT): must be above 0"),
    (["--endpoint", "http://x", "--count", "many"], "--count (TEST_CONNECTOR_COUNT): 'many' is not a valid int"),
])
def test_a_bad_option_stops_the_start_with_one_line_naming_it(argv, message):
    with pytest.raises(SystemExit) as raised:
        Options().parseOptions(argv)
    assert str(raised.value) == f"test-connector: configuration error: {message}"


def test_good_options_build():
    options = Options()
    options.parseOptions(["--endpoint", "https://x", "--count", "3"])
    assert options.built and options["count"] == 3 and options["timeout"] == 1.0
