"""Where chunkd's and uvicorn's log records go: stderr, at ``--log-level``, as text or one JSON object per line.

The configuration is a :func:`logging.config.dictConfig` document handed to uvicorn (``log_config``): uvicorn
applies it in the server process and again in every ``--workers N`` child it spawns, so each process logs the
same way without chunkd code running first in the child. ``chunkd.access`` (the access log) logs at INFO when
``--access-log`` is on, whatever ``--log-level`` is, and is silent otherwise.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from chunkd.server.redact import redact_text

# uvicorn's TRACE level (5); named here so that chunkd's loggers accept ``--log-level trace`` too
LEVELS = {"critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO,
          "debug": logging.DEBUG, "trace": 5}
ACCESS_LOGGER = "chunkd.access"
# extra={"fields": {...}}: structured values of a record, top-level keys in JSON, key=value pairs in text
FIELDS = "fields"


_second: list[Any] = [-1, ""]  # the last whole second formatted: a busy access log formats each second once


def _iso(created: float) -> str:
    whole = int(created)
    if whole != _second[0]:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_second[1]}.{int(created % 1 * 1000):03d}Z"


def _clean(record: logging.LogRecord, text: str) -> str:
    """``text`` with credentials redacted, whichever logger wrote it; the access log redacts its own
    (a request target only), and its lines are too many to scan twice."""
    return text if record.name == ACCESS_LOGGER else redact_text(text)


class TextFormatter(logging.Formatter):
    """``2026-12-03T12:00:00.123Z INFO chunkd.engine: message``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_iso(record.created)} {record.levelname} {record.name}: {_clean(record, record.getMessage())}"
        if record.exc_info:
            line += "\n" + _clean(record, self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's fields, and a traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": _iso(record.created), "level": record.levelname.lower(),
                               "logger": record.name, "pid": record.process,
                               "message": _clean(record, record.getMessage())}
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = _clean(record, self.formatException(record.exc_info))
        return json.dumps(doc, separators=(",", ":"), default=str, ensure_ascii=False)


def log_config(level: str, fmt: str, access_log: bool) -> dict[str, Any]:
    """The dictConfig document for ``--log-level`` / ``--log-format`` / ``--access-log``."""
    number = LEVELS[level]
    formatter = {"()": f"{__name__}.{'JsonFormatter' if fmt == 'json' else 'TextFormatter'}"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # uvicorn sets use_colors on formatters named "default" and "access" when asked to: keep both names
        "formatters": {"default": formatter, "access": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default",
                                "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": number, "propagate": False},
            "uvicorn.access": {"handlers": [], "propagate": False},  # chunkd.access replaces it
            "chunkd": {"handlers": ["stderr"], "level": number, "propagate": False},
            ACCESS_LOGGER: {"level": logging.INFO if access_log else logging.CRITICAL + 10},
        },
        # other libraries' warnings (the S3 and Azure SDKs, httpx): the same stderr, format and redaction,
        # instead of Python's last-resort handler printing a bare message
        "root": {"handlers": ["stderr"], "level": logging.WARNING},
    }
