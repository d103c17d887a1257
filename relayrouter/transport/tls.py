"""TLS for listeners: server contexts from configuration, and what a TLS
connection tells about its peer.

Contexts are built with Twisted's ``CertificateOptions`` (pyOpenSSL): TLS 1.2
at least, the certificate chain from the ``certificate`` file, and, when
client certificates are ``optional`` or ``required``, verification against the
``ca`` bundle (OpenSSL refuses an unknown issuer or an expired certificate
during the handshake, before any WAMP byte).  A listener is wrapped with
``TLSMemoryBIOFactory``, so any endpoint string (``tcp:8443``, ``unix:...``)
can carry TLS.
"""

import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto
from autobahn.twisted.util import extract_peer_certificate, transport_channel_id
from twisted.internet import ssl
from twisted.internet.interfaces import ISSLTransport
from twisted.protocols.tls import TLSMemoryBIOFactory

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def server_options(tls) -> ssl.CertificateOptions:
    """``tls`` is an :class:`relayrouter.config.auth.TlsConfig`."""
    chain = [x509.load_pem_x509_certificate(pem) for pem in _certificates(tls.certificate)]
    if not chain:
        raise ValueError(f"no certificate in '{tls.certificate}'")
    key = serialization.load_pem_private_key(Path(tls.key).read_bytes(), password=None)
    verify = tls.client_certificates != "none"
    cas = [_x509(pem) for pem in _certificates(tls.ca)] if verify else None
    if verify and not cas:
        raise ValueError(f"no CA certificate in '{tls.ca}'")
    return _ServerOptions(
        chain, key,
        verify=verify,
        caCerts=cas,
        requireCertificate=tls.client_certificates == "required",
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )


class _ServerOptions(ssl.CertificateOptions):
    """CertificateOptions that hands pyOpenSSL cryptography objects for our own
    certificate and key (its X509/PKey wrappers are deprecated)."""

    def __init__(self, chain: list, key, **kwargs) -> None:
        super().__init__(**kwargs)
        self._chain = chain
        self._key = key

    def _makeContext(self):  # noqa: N802 - Twisted's name
        context = super()._makeContext()
        context.use_certificate(self._chain[0])
        context.use_privatekey(self._key)
        for extra in self._chain[1:]:
            context.add_extra_chain_cert(extra)
        context.check_privatekey()
        return context


def wrap(factory, tls):
    """``factory`` behind TLS as configured, or unchanged when ``tls`` is None."""
    if tls is None:
        return factory
    return TLSMemoryBIOFactory(server_options(tls), False, factory)


def tls_facts(transport) -> tuple[bool, dict | None, dict]:
    """(is_secure, peer certificate details, channel ids), read once the handshake is done.

    Autobahn computes these at connectionMade, which for RawSocket over TLS is
    before the handshake; we read them when the WAMP transport opens."""
    if not ISSLTransport.providedBy(transport):
        return False, None, {}
    try:
        channel = transport_channel_id(transport, True, "tls-unique")
    except Exception:
        channel = None
    return True, extract_peer_certificate(transport), ({"tls-unique": channel} if channel else {})


def _x509(pem: bytes) -> crypto.X509:
    return crypto.X509.from_cryptography(x509.load_pem_x509_certificate(pem))


def _certificates(path: str) -> list[bytes]:
    return _PEM_CERT.findall(Path(path).read_bytes())
