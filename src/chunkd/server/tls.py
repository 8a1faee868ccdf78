"""Expose TLS client certificates to the application.

uvicorn verifies client certificates (``ssl_cert_reqs``/``ssl_ca_certs``) but does not put them into the
ASGI scope. This protocol class adds the ASGI TLS extension (``scope["extensions"]["tls"]``, with
``client_cert_chain`` as PEM strings) to every request scope of a TLS connection. ``chunkd serve`` selects it
with ``http="chunkd.server.tls:ClientCertHttpProtocol"``: an import string, so every ``--workers`` process
imports it itself.

The certificate is read once per connection, in ``connection_made``: asyncio and uvloop call it only after
the TLS handshake has finished, when the peer certificate is known.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from chunkd.server.limits import LimitedHttpProtocol
from chunkd.settings import Settings

# ASGI TLS extension: tls_version is the TLS protocol number (0x0304 = TLS 1.3).
_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any] | None:
    """The ASGI ``tls`` extension for a finished handshake, or None when the connection is not TLS."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    version = ssl_object.version()
    return {
        "server_cert": None,
        # Python < 3.13 only exposes the peer's leaf certificate; the chain was verified by the TLS layer.
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version) if version else None,
        "cipher_suite": None,
    }


class ClientCertHttpProtocol(LimitedHttpProtocol):
    """The connection-limited httptools protocol plus the ASGI TLS extension in each request scope."""

    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._tls = tls_extension(transport.get_extra_info("ssl_object"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            scope: Any = self.scope
            extensions = scope.setdefault("extensions", {})
            extensions["tls"] = dict(self._tls)


# An import string, so that every --workers process imports the class itself.
PLAIN_PROTOCOL = "chunkd.server.limits:LimitedHttpProtocol"


class TLSConfigError(Exception):
    """The HTTPS settings are incomplete or their files cannot be used."""


def uvicorn_tls_options(settings: Settings) -> tuple[dict[str, Any], str]:
    """uvicorn's ``ssl_*`` keyword arguments and ``http`` protocol for these settings.

    The files are loaded once here so that a wrong path or a key that does not match the certificate is a
    one-line error at start-up rather than a traceback in every worker.
    """
    if not settings.tls_cert and not settings.tls_key and not settings.tls_client_ca:
        return {}, PLAIN_PROTOCOL
    if not settings.tls_cert or not settings.tls_key:
        raise TLSConfigError("HTTPS needs both --tls-cert and --tls-key (a client CA alone is not enough)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"cannot use --tls-cert {settings.tls_cert} with --tls-key {settings.tls_key}: "
                             f"{exc}") from exc
    options: dict[str, Any] = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    if not settings.tls_client_ca:
        return options, PLAIN_PROTOCOL
    try:
        context.load_verify_locations(settings.tls_client_ca)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"cannot read CA certificates from --tls-client-ca {settings.tls_client_ca}: "
                             f"{exc}") from exc
    modes = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL}
    if settings.tls_client_auth not in modes:
        raise TLSConfigError(f"--tls-client-auth must be 'required' or 'optional', not {settings.tls_client_auth!r}")
    options.update(ssl_ca_certs=str(settings.tls_client_ca), ssl_cert_reqs=modes[settings.tls_client_auth])
    return options, f"{__name__}:ClientCertHttpProtocol"
