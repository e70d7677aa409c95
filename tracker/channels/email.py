"""email: the digest over SMTP (smtplib), plain, STARTTLS or implicit TLS.

One message per run addressed to every recipient in a single SMTP transaction, so each recipient gets
exactly one digest and a failure leaves all of them to be retried together. The subject carries only the
count and date, never patient or diagnosis text.

STARTTLS and TLS always verify the server's certificate and host name: against the system's trust store,
or against `reminders.email.ca_file` when set (a clinic's own CA or a self-signed server certificate).
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from tracker.channels.digest import digest_lines, subject
from tracker.config import secret
from tracker.core.settings import EmailSettings


class EmailChannel:
    name = "email"
    digest = True

    def __init__(self, settings: EmailSettings):
        self.settings = settings

    def _tls_context(self) -> ssl.SSLContext:
        # create_default_context: CERT_REQUIRED and check_hostname; cafile=None means the system's store.
        return ssl.create_default_context(cafile=self.settings.ca_file)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            if s.security == "tls":
                return smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=self._tls_context())
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            if s.security == "starttls":
                try:
                    smtp.starttls(context=self._tls_context())
                except BaseException:
                    smtp.close()
                    raise
            return smtp
        except ssl.SSLCertVerificationError as exc:
            trusted = f"reminders.email.ca_file {s.ca_file!r}" if s.ca_file else "the system's CA store"
            raise RuntimeError(f"{s.host}:{s.port}: server certificate rejected ({exc.verify_message}); "
                               f"trusted CAs: {trusted}") from exc

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
                password = secret(s.password_env)  # read at send time, never kept
                if password is None:
                    raise RuntimeError(f"reminders.email.password_env: ${s.password_env} is not set")
                smtp.login(s.user, password)
            refused = smtp.send_message(message, from_addr=s.sender, to_addrs=s.to)
        if refused:
            raise RuntimeError(f"recipients refused: {', '.join(sorted(refused))}")
