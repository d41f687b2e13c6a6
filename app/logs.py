"""Structured logs: every record of ours carries a stable ``action`` key (``schedule_fired``, ``run_started``).

``text`` renders ``message action=… key=value``; ``json`` renders one object per line. Only the ``app``
logger tree is configured here, so Dramatiq's own log setup in worker processes is left alone.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
        extra = " ".join(f"{k}={_quote(v)}" for k, v in _fields(record).items() if v is not None)
        line = f"{when} {record.levelname:<7} {record.getMessage()} {extra}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def _quote(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


class _DropResultWarning(logging.Filter):
    """Dramatiq warns when an actor returns a value without its Results middleware; RunLifecycle stores
    that value as the run's output, so the warning is wrong here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "haven't added the Results middleware" not in record.getMessage()


class RedactUrls(logging.Filter):
    """Other libraries' log lines name request URLs in full (httpx at INFO; Dramatiq's "Failed to process
    message" with the exception's traceback, where httpx's error names the URL): a token in a query or a
    webhook path would reach the logs. This rewrites the message and the traceback text with the URLs
    redacted, the way spans and run errors keep them."""

    def filter(self, record: logging.LogRecord) -> bool:
        from app.tracing import scrub_urls  # tracing imports settings; logs stays importable on its own

        record.msg, record.args = scrub_urls(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub_urls(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub_urls(record.exc_text)
        return True


# Loggers of libraries that log URLs or the errors that carry them.
URL_LOGGERS = ("httpx", "dramatiq.worker.WorkerThread")


def configure_logging(level: str, fmt: str) -> None:
    logger = logging.getLogger("app")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_DropResultWarning())
    for name in URL_LOGGERS:
        library = logging.getLogger(name)
        if not any(isinstance(f, RedactUrls) for f in library.filters):
            library.addFilter(RedactUrls())
