from __future__ import annotations

import logging

import httpx
import pytest

from app.logs import RedactUrls, configure_logging

SECRET = "s3cr3t-t0ken-value"
URL = f"https://oapi.example.com/robot/send?access_token={SECRET}"


def test_library_log_lines_and_tracebacks_keep_urls_redacted(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging("INFO", "text")
    caplog.set_level(logging.INFO, logger="httpx")
    logger = logging.getLogger("dramatiq.worker.WorkerThread")
    assert any(isinstance(f, RedactUrls) for f in logger.filters)
    request = httpx.Request("GET", URL)
    try:
        raise httpx.HTTPStatusError(
            f"Client error '404 Not Found' for url '{URL}'",
            request=request,
            response=httpx.Response(404, request=request),
        )
    except httpx.HTTPStatusError:
        logger.error("Failed to process message %s with unhandled exception.", URL, exc_info=True)
    logging.getLogger("httpx").info('HTTP Request: GET %s "HTTP/1.1 200 OK"', URL)

    text = "\n".join(caplog.text.splitlines())
    assert "Failed to process message" in text and "HTTP Request: GET https://oapi.example.com" in text
    assert "access_token=" in text
    assert SECRET not in text
    for record in caplog.records:
        assert SECRET not in record.getMessage() and SECRET not in (record.exc_text or "")
