"""Authenticators, one module per WAMP authmethod.

Each class implements :class:`relayrouter.core.auth.Authenticator`: it looks
at a :class:`~relayrouter.core.auth.JoinRequest` (and at the answer to its
challenge) and returns ``Accept`` / ``Challenge`` / ``Deny``.  None performs
I/O, logs or keeps per-session state; secrets arrive already resolved by the
configuration layer.  Anything slow (a JWKS fetch) is injected and feeds its
result back through a Deferred-like object (see :mod:`._pending`).

=================  ==========================================
module             authmethod
=================  ==========================================
``ticket``         ``ticket`` (static principals)
``wampcra``        ``wampcra`` (plain and salted secrets)
``cryptosign``     ``cryptosign`` (Ed25519, tls-unique binding)
``tls``            ``tls`` (client certificate + identity rules)
``jwt``            ``jwt``, or ``ticket`` carrying a JWT
``jwks``           (Twisted) fetching a JWKS URL with treq
=================  ==========================================
"""
