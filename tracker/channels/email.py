"""email: the digest over SMTP (smtplib), plain, STARTTLS or implicit TLS.

One message per run addressed to every recipient in a single SMTP transaction, so each recipient gets
exactly one digest and a failure leaves all of them to be retried together. The subject carries only the
count and date, never patient or diagnosis text.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from tracker.channels.digest import digest_lines, subject
from tracker.config import EmailSettings


class EmailChannel:
    name = "email"
    digest = True

    def __init__(self, settings: EmailSettings):
        self.settings = settings

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.security == "tls":
            return smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=ssl.create_default_context())
        smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
        if s.security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        return smtp

    def send_digest(self, rows, count, as_of, from_day=None) -> None:
        s = self.settings
        message = EmailMessage()
        message["Subject"] = subject(count, as_of)
        message["From"] = s.sender
        message["To"] = ", ".join(s.to)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=s.sender.rsplit("@", 1)[1])
        message.set_content("\n".join(digest_lines(rows, count, as_of, from_day)) + "\n")
        with self._connect() as smtp:
            if s.user:
                password = s.password()
                if password is None:
                    raise RuntimeError(f"reminders.email.password_env: ${s.password_env} is not set")
                smtp.login(s.user, password)
            refused = smtp.send_message(message, from_addr=s.sender, to_addrs=s.to)
        if refused:
            raise RuntimeError(f"recipients refused: {', '.join(sorted(refused))}")
