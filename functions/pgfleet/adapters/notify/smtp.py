"""EMAIL: SMTP (smtplib; plain, STARTTLS or implicit TLS, optional login), or Amazon SES
`SendEmail` where the configuration says `provider: ses`."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from pgfleet.adapters.notify.posting import TIMEOUT_SECONDS
from pgfleet.ports.notifier import DeliveryFailed, Message


def send(configuration: dict[str, Any], message: Message) -> str:
    recipients = list(configuration["to"])
    if configuration.get("provider") == "ses":
        return _send_ses(configuration, recipients, message)
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = configuration["from_address"]
    mail["To"] = ", ".join(recipients)
    mail["X-Pgfleet-Event"] = message.event
    mail.set_content(message.text)
    host, tls = configuration["host"], configuration.get("tls") or "none"
    port = int(configuration.get("port") or (465 if tls == "ssl" else 25))
    try:
        if tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=TIMEOUT_SECONDS, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(host, port, timeout=TIMEOUT_SECONDS)
        with smtp:
            if tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if configuration.get("username"):
                smtp.login(configuration["username"], configuration.get("password") or "")
            refused = smtp.send_message(mail)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryFailed(f"SMTP login refused ({exc.smtp_code})") from None
    except smtplib.SMTPException as exc:
        raise DeliveryFailed(f"SMTP error: {_short(exc)}") from None
    except (OSError, TimeoutError) as exc:
        raise DeliveryFailed(f"could not connect to {host}:{port}: {exc.strerror or exc}") from None
    if refused:
        raise DeliveryFailed(f"SMTP server refused {', '.join(sorted(refused))}")
    return f"mail to {len(recipients)} recipient(s) via {host}:{port}"


def _send_ses(configuration: dict[str, Any], recipients: list[str], message: Message) -> str:
    from pgfleet.adapters.aws import client, error_code

    try:
        answer = client("ses").send_email(
            Source=configuration["from_address"],
            Destination={"ToAddresses": recipients},
            Message={"Subject": {"Data": message.title[:998]}, "Body": {"Text": {"Data": message.text}}},
        )
    except Exception as exc:
        raise DeliveryFailed(f"SES refused the mail: {error_code(exc) or type(exc).__name__}") from None
    return f"mail to {len(recipients)} recipient(s) via SES ({answer.get('MessageId', '')})"


def _short(exc: smtplib.SMTPException) -> str:
    text = str(exc)
    return text[:200] if text else type(exc).__name__
