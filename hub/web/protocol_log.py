"""The logger aiohttp's HTTP protocol writes to (passed as its `logger`).

A request aiohttp cannot even parse (a header line over the limit, bytes that are not HTTP, a body
that does not decode) is the client's fault: one INFO line, no traceback, so that nobody can fill
the log with tracebacks. Every other record, such as a failure of the hub's own, keeps its level
and traceback.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError

LOGGER_NAME = "hub.web.http"


class _ClientFaults(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if _client_fault(exc):
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {str(exc)[:200]!r}"
            record.args = ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _client_fault(exc: BaseException | None) -> bool:
    # RequestPayloadError: a body that cannot be decoded, met again when aiohttp drains what the
    # handler left unread
    return isinstance(exc, RequestPayloadError) or (
        isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500)


def protocol_logger() -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(f, _ClientFaults) for f in logger.filters):
        logger.addFilter(_ClientFaults())
    return logger
