"""The URIs the router answers with, named once."""

# Errors the WAMP spec defines.
INVALID_URI = "wamp.error.invalid_uri"
NO_SUCH_PROCEDURE = "wamp.error.no_such_procedure"
PROCEDURE_ALREADY_EXISTS = "wamp.error.procedure_already_exists"
NO_SUCH_REGISTRATION = "wamp.error.no_such_registration"
NO_SUCH_SUBSCRIPTION = "wamp.error.no_such_subscription"
INVALID_ARGUMENT = "wamp.error.invalid_argument"
NO_SUCH_REALM = "wamp.error.no_such_realm"
NO_SUCH_ROLE = "wamp.error.no_such_role"
NO_SUCH_SESSION = "wamp.error.no_such_session"
NOT_AUTHORIZED = "wamp.error.not_authorized"
AUTHENTICATION_FAILED = "wamp.error.authentication_failed"
NO_AUTH_METHOD = "wamp.error.no_auth_method"
PROTOCOL_VIOLATION = "wamp.error.protocol_violation"
CANCELED = "wamp.error.canceled"
TIMEOUT = "wamp.error.timeout"
UNAVAILABLE = "wamp.error.unavailable"
NO_AVAILABLE_CALLEE = "wamp.error.no_available_callee"
OPTION_NOT_ALLOWED = "wamp.error.option_not_allowed"
PAYLOAD_SIZE_EXCEEDED = "wamp.error.payload_size_exceeded"
FEATURE_NOT_SUPPORTED = "wamp.error.feature_not_supported"
DISCLOSE_ME_DISALLOWED = "wamp.error.option_disallowed.disclose_me"

# Our own.
INTERNAL_ERROR = "relayrouter.error.internal"

# Close reasons.
CLOSE_NORMAL = "wamp.close.normal"
CLOSE_GOODBYE_AND_OUT = "wamp.close.goodbye_and_out"
CLOSE_SYSTEM_SHUTDOWN = "wamp.close.system_shutdown"
CLOSE_KILLED = "wamp.close.killed"
CLOSE_CLOSE_REALM = "wamp.close.close_realm"
CLOSE_SLOW_CONSUMER = "wamp.close.slow_consumer"


class ProtocolViolation(Exception):
    """The peer broke the protocol; the session is answered with ABORT."""


class InvalidUriRequest(Exception):
    """A request carried an invalid URI; answered with ERROR, not ABORT."""

    def __init__(self, request_type: int, request: int, message: str) -> None:
        super().__init__(message)
        self.request_type = request_type
        self.request = request
