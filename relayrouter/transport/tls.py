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

from autobahn.twisted.util import extract_peer_certificate, transport_channel_id
from twisted.internet import ssl
from twisted.internet.interfaces import ISSLTransport
from twisted.protocols.tls import TLSMemoryBIOFactory

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def server_options(tls) -> ssl.CertificateOptions:
    """``tls`` is an :class:`relayrouter.authconfig.TlsConfig`."""
    chain = [ssl.Certificate.loadPEM(pem).original for pem in _certificates(tls.certificate)]
    if not chain:
        raise ValueError(f"no certificate in '{tls.certificate}'")
    key = ssl.KeyPair.load(Path(tls.key).read_bytes(), ssl.FILETYPE_PEM).original
    verify = tls.client_certificates != "none"
    cas = [ssl.Certificate.loadPEM(pem).original for pem in _certificates(tls.ca)] if verify else None
    if verify and not cas:
        raise ValueError(f"no CA certificate in '{tls.ca}'")
    return ssl.CertificateOptions(
        privateKey=key,
        certificate=chain[0],
        extraCertChain=chain[1:],
        verify=verify,
        caCerts=cas,
        requireCertificate=tls.client_certificates == "required",
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )


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


def _certificates(path: str) -> list[bytes]:
    return _PEM_CERT.findall(Path(path).read_bytes())
