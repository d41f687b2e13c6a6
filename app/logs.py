"""Structured logs: one format for every line of a process, an ``action`` key on every record, secrets masked.

``text`` renders ``time LEVEL message action=… key=value``; ``json`` renders one object per line (``time``,
``level``, ``logger``, ``message``, ``action``, the record's extra fields, ``exception``).

Our records carry a stable ``action`` of their own (``schedule_fired``, ``run_started``). A record without one (a
library's) gets one derived from its logger: ``dramatiq_log``, ``periodiq_log``, ``httpx_log``, ``pika_log``…

Who sets up what: ``dramatiq`` calls ``logging.basicConfig`` in each worker process (a root handler on the pipe
its supervisor reads) before importing ``app.actors``, and ``periodiq`` calls it before anything else;
:func:`configure_logging`, called from ``app.actors``, then puts our formatter and :class:`Guard` on every
root handler, and gives the ``app`` logger a handler of its own (its level is ``PUNCHCLOCK_LOG_LEVEL``; the
root's stays what the launcher chose, e.g. ``dramatiq -v``). A process whose launcher set up no root handler
(``dramatiq --skip-logging``) gets one from us, at ``PUNCHCLOCK_LOG_LEVEL``. Lines written before
``app.actors`` is imported are outside its reach: periodiq's first line ("Starting Periodiq…") and the few lines
of dramatiq's supervisor process, which never imports it (booting, forwarding a signal, a worker that died);
``dramatiq app.actors --skip-logging`` drops the supervisor's INFO lines.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from app.redaction import redact

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# A logged message or field longer than this is cut: a 10 MB payload must not become a 10 MB log line.
MAX_CHARS = 2_000
# A traceback keeps its end, where the exception is, up to this.
MAX_TRACEBACK_CHARS = 8_000
# Redaction looks at this much of a value before the cut, so a huge message costs no more than a long one.
_REDACT_WINDOW = 4 * MAX_TRACEBACK_CHARS


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def derived_action(logger_name: str) -> str:
    """The ``action`` of a record that has none: its logger's top-level name, ``dramatiq.worker`` →
    ``dramatiq_log``."""
    top = re.sub(r"\W+", "_", logger_name.split(".")[0].lower()).strip("_")
    return f"{top or 'root'}_log"


def bounded(text: str, limit: int = MAX_CHARS, *, keep: str = "head") -> str:
    """``text`` cut to ``limit`` characters, the cut marked with how much was dropped. ``keep="tail"`` keeps the
    end instead (a traceback's last lines name the exception)."""
    if len(text) <= limit:
        return text
    dropped = f"{len(text) - limit:,}"
    if keep == "tail":
        return f"[… {dropped} characters cut] {text[-limit:]}"
    return f"{text[:limit]} [… {dropped} characters cut]"


def _guarded(text: str, limit: int = MAX_CHARS, *, keep: str = "head") -> str:
    """Redacted, then bounded like :func:`bounded`; only a window around what is kept is redacted (the rest is
    cut anyway), so a huge value costs no more than a long one. The count of what was cut is the original's."""
    window = text
    if len(text) > _REDACT_WINDOW:
        window = text[-_REDACT_WINDOW:] if keep == "tail" else text[:_REDACT_WINDOW]
    unread = len(text) - len(window)
    safe = redact(window)
    if len(safe) > limit:
        kept = safe[-limit:] if keep == "tail" else safe[:limit]
    elif unread:
        kept = safe
    else:
        return safe
    dropped = f"{len(safe) - len(kept) + unread:,}"
    return f"[… {dropped} characters cut] {kept}" if keep == "tail" else f"{kept} [… {dropped} characters cut]"


def _guard_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _guarded(value)
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = str(value)
    guarded = _guarded(text)
    if guarded == text:
        return value
    try:
        return json.loads(guarded)  # redacted, still a structure
    except ValueError:
        return guarded


class Guard(logging.Filter):
    """On a handler: every record it writes has its message, extra fields, traceback and stack redacted
    (:func:`app.redaction.redact`) and bounded (:data:`MAX_CHARS`), and an ``action``. Rewrites the record in
    place (idempotent), so every handler after sees the same safe text; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_punchclock_guarded", False):
            return True
        record.msg, record.args = _guarded(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _guarded(record.exc_text, MAX_TRACEBACK_CHARS, keep="tail")
        if record.stack_info:
            record.stack_info = _guarded(record.stack_info, MAX_TRACEBACK_CHARS, keep="tail")
        for key, value in _fields(record).items():
            setattr(record, key, _guard_value(value))
        if getattr(record, "action", None) is None:
            record.action = derived_action(record.name)
        record._punchclock_guarded = True
        return True


def _traceback(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    if record.exc_text:
        return record.exc_text
    return formatter.formatException(record.exc_info) if record.exc_info else ""


def _shown_fields(record: logging.LogRecord) -> dict[str, object]:
    fields = {k: v for k, v in _fields(record).items() if k != "_punchclock_guarded"}
    fields.setdefault("action", derived_action(record.name))
    if fields["action"] is None:
        fields["action"] = derived_action(record.name)
    return fields


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
        extra = " ".join(f"{k}={_quote(v)}" for k, v in _shown_fields(record).items() if v is not None)
        line = f"{when} {record.levelname:<7} {record.getMessage()} {extra}".rstrip()
        traceback = _traceback(self, record)
        if traceback:
            line += "\n" + traceback
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_shown_fields(record),
        }
        traceback = _traceback(self, record)
        if traceback:
            body["exception"] = traceback
        if record.stack_info:
            body["stack"] = record.stack_info
        return json.dumps(body, default=str)


def _quote(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or "\n" in text or not text) else text


class _DropResultWarning(logging.Filter):
    """Dramatiq warns when an actor returns a value without its Results middleware; RunLifecycle stores
    that value as the run's output, so the warning is wrong here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "haven't added the Results middleware" not in record.getMessage()


class _DemoteSkipped(logging.Filter):
    """Dramatiq warns "Message … was skipped." for every message a middleware skips. RunLifecycle skips on
    purpose, after logging why under its own action (a backfill run waiting for its lease, a duplicate, a run
    already over), so at WARNING the line is noise that says nothing new: hundreds of waiting backfill runs made
    it hundreds of lines a second. Kept at DEBUG, for whoever turns Dramatiq's loggers up."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not record.getMessage().endswith(" was skipped."):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def guard(handler: logging.Handler, formatter: logging.Formatter | None = None) -> None:
    """Give ``handler`` our :class:`Guard` (once) and, when given, ``formatter``."""
    if formatter is not None:
        handler.setFormatter(formatter)
    if not any(isinstance(f, Guard) for f in handler.filters):
        handler.addFilter(Guard())


def quiet_root_logging() -> None:
    """For an entry point no launcher sets logging up for (the ``punchclock`` CLI, ``punchclock dev``): library
    records at WARNING and above on stderr, through our formatter and :class:`Guard`, instead of Python's bare
    last-resort output. Does nothing when the root logger already has handlers. :func:`configure_logging`,
    called later when ``app.actors`` is imported, sets the format and leaves this level alone."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    guard(handler, TextFormatter())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def configure_logging(level: str, fmt: str) -> None:
    """Format ``fmt`` (``text`` or ``json``) and :class:`Guard` on the ``app`` logger's handler (at ``level``) and
    on every handler of the root logger, so library records (Dramatiq, periodiq, httpx, pika) come out in the
    same format, redacted. Idempotent: a second call replaces the first's setup."""
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    app_logger = logging.getLogger("app")
    app_logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    guard(handler, formatter)
    app_logger.addHandler(handler)
    app_logger.setLevel(level.upper())
    app_logger.propagate = False
    root = logging.getLogger()
    if not root.handlers:  # nothing set up by a launcher (dramatiq --skip-logging): ours
        root.addHandler(logging.StreamHandler(sys.stderr))
        root.setLevel(level.upper())
    for root_handler in root.handlers:
        guard(root_handler, formatter)
    if logging.lastResort is not None:  # records of a process with no handler at all still pass redaction
        guard(logging.lastResort)
    logging.captureWarnings(True)  # Python's warnings as records of "py.warnings", not bare stderr text
    worker_thread = logging.getLogger("dramatiq.worker.WorkerThread")
    if not any(isinstance(f, _DropResultWarning) for f in worker_thread.filters):
        worker_thread.addFilter(_DropResultWarning())
    if not any(isinstance(f, _DemoteSkipped) for f in worker_thread.filters):
        worker_thread.addFilter(_DemoteSkipped())
