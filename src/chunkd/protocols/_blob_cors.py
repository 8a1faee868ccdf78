"""CORS on the Blob endpoint, so browsers can use a sessionUrl (e.g. with @azure/storage-blob).

Azure keeps CORS rules per account (Set Blob Service Properties); chunkd has one rule, from the server's
``cors_origins`` setting (shared with tus): those origins (``*`` = any), the methods the endpoint serves, any
request header, every response header exposed. Answers follow Azure (checked against Azurite 3.35.0):

* preflight ``OPTIONS`` (no SAS needed): 200 with ``Access-Control-Allow-Origin`` = the origin,
  ``-Allow-Methods`` = the requested method, ``-Allow-Headers`` = the requested headers, ``-Max-Age``,
  ``-Allow-Credentials: true``; an origin or method no rule allows (or CORS off) is 403
  ``CorsPreflightFailure``; without ``Origin`` or ``Access-Control-Request-Method`` 400 ``InvalidHeaderValue``;
* other requests with an allowed ``Origin``: ``Access-Control-Allow-Origin`` (``*`` for the any-origin rule,
  else the origin with ``-Allow-Credentials: true``), ``Access-Control-Expose-Headers`` listing the
  response's own headers (``x-ms-meta-*`` names vary per blob), and ``Vary: Origin``.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response

from chunkd.protocols._blob_wire import BlobError

METHODS = ("DELETE", "GET", "HEAD", "POST", "PUT")
MAX_AGE = 86400


class BlobCors:
    """The one CORS rule of the Blob endpoint; no origins = CORS off (preflights fail, no headers added)."""

    def __init__(self, origins: Iterable[str] = ()) -> None:
        self.origins = frozenset(o.strip().rstrip("/") for o in origins if o.strip())
        self.any_origin = "*" in self.origins

    def allows(self, origin: str) -> bool:
        return bool(origin) and (self.any_origin or origin.rstrip("/") in self.origins)

    def preflight(self, request: Request) -> Response:
        """The answer to ``OPTIONS``; raises BlobError when the preflight fails."""
        origin = request.headers.get("origin", "")
        method = request.headers.get("access-control-request-method", "")
        if not origin or not method:
            missing = "Origin" if not origin else "Access-Control-Request-Method"
            raise BlobError(400, "InvalidHeaderValue", "A required CORS header is not present.", HeaderName=missing)
        if not self.allows(origin) or method.upper() not in METHODS:
            raise BlobError(403, "CorsPreflightFailure", "CORS not enabled or no matching rule found for this "
                            "request.")
        headers = {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": method.upper(),
                   "Access-Control-Max-Age": str(MAX_AGE), "Access-Control-Allow-Credentials": "true",
                   "Vary": "Origin"}
        wanted = request.headers.get("access-control-request-headers", "")
        if wanted.strip():
            headers["Access-Control-Allow-Headers"] = wanted
        return Response(status_code=200, headers=headers)

    def decorate(self, request: Request, response: Response) -> None:
        """Add the CORS headers to an answer to an allowed origin (a preflight carries its own, or none when it
        failed)."""
        if not self.origins:
            return
        origin = request.headers.get("origin", "")
        response.headers["Vary"] = "Origin"
        if request.method == "OPTIONS" or not self.allows(origin):
            return
        exposed = sorted({k.decode("latin-1") for k, _ in response.raw_headers} - {"vary"})
        response.headers["Access-Control-Expose-Headers"] = ",".join(exposed)
        if self.any_origin:
            response.headers["Access-Control-Allow-Origin"] = "*"
        else:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
