"""Send a notification mail over SMTP (stdlib ``smtplib``, blocking: call it from a thread).

The server is ``PUNCHCLOCK_SMTP_HOST``/``_PORT``. The connection is upgraded with STARTTLS when
``PUNCHCLOCK_SMTP_STARTTLS`` is on and the server offers it; a login (``_USER``/``_PASSWORD``) is never sent
over a connection that was meant to be upgraded and was not.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from app.notify.bodies import RunEvent, message_text
from app.notify.delivery_error import DeliveryError
from app.notify.targets import Target
from app.redaction import redact
from app.settings import Settings

SMTP_TIMEOUT_SECONDS = 30.0


def send_mail(settings: Settings, target: Target, event: RunEvent, *, timeout: float = SMTP_TIMEOUT_SECONDS) -> None:
    """Mail ``event`` to ``target``'s recipients; :class:`DeliveryError` (redacted, the SMTP password included)
    when not accepted."""
    if not settings.smtp_host:
        raise DeliveryError(f"{target.masked}: PUNCHCLOCK_SMTP_HOST is not set; set it to send mail", transient=False)
    subject, text = message_text(event)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(target.recipients)
    message.set_content(text)
    server = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout) as smtp:
            smtp.ehlo()
            if settings.smtp_starttls and smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            elif settings.smtp_starttls and settings.smtp_user:
                raise DeliveryError(
                    f"{target.masked}: {server} does not offer STARTTLS; not sending the password in clear"
                    " (set PUNCHCLOCK_SMTP_STARTTLS=false to allow it)",
                    transient=False,
                )
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
            smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:  # the server said no: 4xx try again later, 5xx never
        reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        detail = f"SMTP {exc.smtp_code} {reply}"
        raise _error(settings, target, server, detail, transient=400 <= exc.smtp_code < 500) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        refused = ", ".join(f"{address} ({code})" for address, (code, _) in exc.recipients.items())
        detail = f"recipients refused: {refused}"
        raise _error(settings, target, server, detail, transient=all(400 <= c < 500 for c in codes)) from None
    except smtplib.SMTPServerDisconnected as exc:
        raise _error(settings, target, server, f"{type(exc).__name__}: {exc}", transient=True) from None
    except (smtplib.SMTPException, ssl.SSLError) as exc:  # no AUTH, a bad certificate: configuration
        raise _error(settings, target, server, f"{type(exc).__name__}: {exc}", transient=False) from None
    except OSError as exc:  # connection refused, timeouts, resets
        raise _error(settings, target, server, f"{type(exc).__name__}: {exc}", transient=True) from None


def _error(settings: Settings, target: Target, server: str, detail: str, *, transient: bool) -> DeliveryError:
    detail = redact(detail, also=[settings.smtp_password])
    return DeliveryError(f"{target.masked}: {server}: {detail}", transient=transient)
