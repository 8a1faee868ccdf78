"""Expose TLS client certificates to the application.

uvicorn verifies client certificates (``ssl_cert_reqs``/``ssl_ca_certs``) but does not put them into the
ASGI scope. This protocol class adds the ASGI TLS extension's ``client_cert_chain`` (PEM strings) to
every request scope of a TLS connection; select it with ``http="chunkd.server.tls:ClientCertHttpProtocol"``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class ClientCertHttpProtocol(HttpToolsProtocol):
    _peer_pem: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self._peer_pem = ssl.DER_cert_to_PEM_cert(der) if der else None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        scope: Any = self.scope
        if self._peer_pem is not None:
            scope["extensions"] = {"tls": {"client_cert_chain": [self._peer_pem], "tls_version": None}}
